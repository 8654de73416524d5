"""End to end on a small OpenMoji sample: build -> save -> load -> search, in every direction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline import Hit, Retriever
from pipeline.config import ProjectorConfig
from pipeline.query import QueryError
from pipeline.space.anchors import AnchorSet
from pipeline.store.manifest import IndexMismatchError

from .conftest import SMALL_ANCHORS, SMALL_ITEMS


def test_index_directory_contents(small_index: Path) -> None:
    names = {p.name for p in small_index.iterdir()}
    assert {"manifest.json", "image.faiss", "text.faiss", "projector.safetensors", "anchors.parquet",
            "image_items.parquet", "text_items.parquet", "shards", "config.yaml"} <= names
    shard = {p.name for p in (small_index / "shards" / "000000").iterdir()}
    assert shard == {"shard.json", "image.npy", "text.npy", "image_items.parquet", "text_items.parquet",
                     "thumbnails.parquet"}
    assert not (small_index.parent / ".small.partial").exists()  # a finished build leaves no partial shards
    m = json.loads((small_index / "manifest.json").read_text())
    assert m["encoders"]["text"]["spec"] == "minilm" and m["encoders"]["text"]["dim"] == 384
    assert m["encoders"]["image"]["spec"] == "efficientnet-lite0" and m["encoders"]["image"]["dim"] == 1280
    assert m["anchors"]["count"] == SMALL_ANCHORS and len(m["anchors"]["hash"]) == 64
    assert m["faiss"]["factory"] == "Flat" and m["counts"]["image"] == SMALL_ITEMS
    assert m["counts"]["text"] == 2 * SMALL_ITEMS  # en + es captions
    assert m["package_version"] == pipeline.__version__ and set(m["projector"]) == set(vars(ProjectorConfig()))
    assert AnchorSet.load(small_index / "anchors.parquet").hash == m["anchors"]["hash"]


def test_text_to_image(small_retriever: Retriever) -> None:
    hits = small_retriever.search(text="a smiling face", k=7)
    assert len(hits) == 7 and all(isinstance(h, Hit) and h.modality == "image" for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0]["id"] == hits[0].id and "char" in hits[0].metadata


def test_image_to_text_finds_own_caption_near_top(small_retriever: Retriever) -> None:
    """An anchor's own image must retrieve its own caption first: both rows are exact anchor vectors."""
    anchors = AnchorSet.load(small_retriever.index_dir / "anchors.parquet")
    found = 0
    for item_id, png in list(zip(anchors.ids, anchors.images))[:10]:
        hits = small_retriever.search(image=png, k=5, result_lang="en")
        assert all(h.modality == "text" and h.lang == "en" for h in hits)
        found += item_id in [h.id for h in hits]
    assert found >= 5


def test_same_modality_search(small_retriever: Retriever) -> None:
    item_id = small_retriever.items["image"].column("id")[3].as_py()
    png = small_retriever.thumbnail(item_id)
    assert small_retriever.search(image=png, k=1, target="image")[0].id == item_id
    caption = small_retriever.item(item_id)["caption"]
    assert small_retriever.search(text=caption, k=1, target="text")[0].caption == caption


def test_language_of_query_and_results(small_retriever: Retriever) -> None:
    assert small_retriever.languages == ["en", "es"]
    es = small_retriever.search(text="cara sonriente", lang="es", k=3)
    assert len(es) == 3
    hits = small_retriever.search(text="a smiling face", k=5, target="text", result_lang="es")
    assert {h.lang for h in hits} == {"es"}
    with pytest.raises(ValueError, match="no anchor captions in language 'fr'"):
        small_retriever.search(text="visage", lang="fr")


def test_search_validates_arguments(small_retriever: Retriever) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        small_retriever.search(k=3)
    with pytest.raises(ValueError, match="k must be"):
        small_retriever.search(text="x", k=0)
    with pytest.raises(ValueError, match="non-empty"):
        small_retriever.search(text="   ")


def test_stored_vectors_equal_fresh_projection(small_retriever: Retriever) -> None:
    """What the index stores is exactly what a query embeds to: no drift between build and query paths."""
    item = small_retriever.items["image"].slice(0, 1).to_pylist()[0]
    q = small_retriever.embed(text=item["caption"])
    stored = small_retriever.indexes["text"].reconstruct(0)
    np.testing.assert_allclose(q[0], stored, atol=1e-4)


def test_load_refuses_other_encoders_and_anchors(small_index: Path, tmp_path: Path) -> None:
    with pytest.raises(IndexMismatchError, match="built with 'minilm'"):
        Retriever.load(small_index, text_encoder="st:sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(IndexMismatchError, match="efficientnet-lite0"):
        Retriever.load(small_index, image_encoder="efficientnet-lite1")
    other = AnchorSet(["x", "y"], [b"a", b"b"], {"en": ["p", "q"]})
    other.save(tmp_path / "a.parquet")
    with pytest.raises(IndexMismatchError, match="anchor set mismatch"):
        Retriever.load(small_index, anchors=tmp_path / "a.parquet")
    Retriever.load(small_index, text_encoder="minilm", anchors=small_index / "anchors.parquet")


def test_load_refuses_inconsistent_directory(small_index: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(small_index, broken)
    (broken / "image.faiss").unlink()
    with pytest.raises(FileNotFoundError, match="image.faiss"):
        Retriever.load(broken)
    with pytest.raises(FileNotFoundError, match="not a relspace index"):
        Retriever.load(tmp_path)


# -- query rules and limits: the same as the CLI and the server (see tests/test_query.py) ----------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": "cat", "k": 10**9}, "k must be an integer between 1 and 100, got 1000000000"),
        ({"text": "cat", "k": True}, "got True"),
        ({"text": "cat", "k": 0}, "between 1 and 100, got 0"),
        ({"text": "a" * 1_000_000}, "text has 1000000 characters; the limit is 1000"),
    ],
    ids=["k-huge", "k-bool", "k-zero", "text-1MB"],
)
def test_search_refuses_what_the_server_refuses(small_retriever: Retriever, kwargs: dict, message: str) -> None:
    """No silent cap of k, no bool as k, no silent truncation of a long text."""
    with pytest.raises(ValueError, match=message):
        small_retriever.search(**kwargs)


def test_retriever_limits_are_configurable(small_index: Path) -> None:
    from pipeline.core.limits import Limits

    r = Retriever.load(small_index, limits=Limits(max_k=3))
    assert len(r.search(text="cat", k=3)) == 3
    with pytest.raises(ValueError, match="between 1 and 3"):
        r.search(text="cat", k=4)


def test_huge_query_image_is_one_clear_error(small_retriever: Retriever, tmp_path: Path) -> None:
    from .bomb import HUGE_MESSAGE, png_header

    path = tmp_path / "huge.png"
    path.write_bytes(png_header(20_000, 20_000))
    for image in (path, path.read_bytes()):
        with pytest.raises(ValueError, match=HUGE_MESSAGE) as e:
            small_retriever.search(image=image, k=3)
        assert str(e.value).startswith("the query image") and "bomb" not in str(e.value).lower()


def test_query_image_errors_name_the_query_image(small_retriever: Retriever) -> None:
    with pytest.raises(ValueError, match="the query image") as e:
        small_retriever.search(image=b"not an image", k=3)
    assert "#0" not in str(e.value) and "item" not in str(e.value)


def test_caption_hits_carry_the_item_metadata(small_retriever: Retriever) -> None:
    item_id = small_retriever.items["image"].column("id")[5].as_py()
    for hits in (small_retriever.search(text="a smiling face", k=8, target="text"),
                 small_retriever.search(image=small_retriever.thumbnail(item_id), k=8, result_lang="es")):
        assert hits and all(h.modality == "text" for h in hits)
        for h in hits:
            rec = small_retriever.item(h.id)
            # the item's other columns; the caption and lang stay the hit's own
            assert h.metadata == {k: rec[k] for k in ("char", "group", "subgroup")}
            assert h.caption and h.lang in ("en", "es")


def test_vector_api_keeps_the_query_rules(small_retriever: Retriever) -> None:
    """embed and search_vectors take no Query, but break a rule of Query.validate with its error and words."""
    xq = small_retriever.embed(text="a smiling face")
    cases = [
        (lambda: small_retriever.embed(), "exactly one of the two"),
        (lambda: small_retriever.embed(text="x", image=b"png"), "not both"),
        (lambda: small_retriever.embed(text="visage", lang="fr"),
         r"unknown lang 'fr': no anchor captions in language 'fr'; this index has \['en', 'es'\]"),
        (lambda: small_retriever.embed(image=b"png", lang="en"), "an image query has none"),
        (lambda: small_retriever.search_vectors(xq, 3, target="image", result_lang="es"), "needs target 'text'"),
        (lambda: small_retriever.search_vectors(xq, 3, target="text", result_lang="fr"), "unknown result_lang 'fr'"),
    ]
    for call, message in cases:
        with pytest.raises(QueryError, match=message):
            call()
    hits = small_retriever.search_vectors(xq, 3, target="text", result_lang="es")[0]
    assert len(hits) == 3 and {h.lang for h in hits} == {"es"}


def test_reload_reads_the_index_again_with_the_loaded_encoders(small_retriever: Retriever) -> None:
    text = small_retriever.encoder("text")
    new = small_retriever.reload()
    assert new is not small_retriever and new.indexes is not small_retriever.indexes
    assert new.encoder("text") is text  # the model is shared, not loaded again
    assert new.manifest.generation == small_retriever.manifest.generation
