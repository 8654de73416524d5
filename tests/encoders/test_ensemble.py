"""Encoder ensembles: the spec grammar, the ensemble projector's maths, and an ensemble through build,
search, re-anchoring (a query-side member added without re-indexing) and eval."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import Retriever
from pipeline.config import ConfigError, ProjectorConfig, load_config
from pipeline.core.spaces import SpaceKey
from pipeline.core.specs import Member, ensemble_spec, format_members, parse_members
from pipeline.space.projectors import EnsembleProjector, load_projectors, make_projector, save_projectors
from pipeline.space.relative import RelativeProjector, l2_normalize
from pipeline.store.manifest import IndexMismatchError

# -- the spec grammar ------------------------------------------------------------------------------------------

specs = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12).map(str.strip).filter(
    lambda s: s and "+" not in s and "*" not in s)


@given(st.lists(st.builds(Member, specs, st.floats(1e-6, 1e6)), min_size=1, max_size=4, unique_by=lambda m: m.spec))
def test_an_ensemble_spec_reads_back_as_the_same_members(members: list[Member]) -> None:
    assert parse_members(format_members(members)) == members


def test_the_server_hides_local_paths_member_by_member() -> None:
    from pipeline.serve.public_info import public_spec

    spec = "timm:tf_efficientnet_lite0@/home/me/lite0.pth + 0.5*onnx:/opt/m/l3.onnx@/opt/tok"
    assert public_spec(spec) == "timm:tf_efficientnet_lite0@lite0.pth + 0.5*onnx:l3.onnx@tok"


def test_config_lists_become_one_canonical_spec() -> None:
    cfg = load_config({"text_encoder": ["minilm", {"spec": "minilm-l3", "weight": 0.5}],
                       "text_encoders": {"es": ["minilm", "minilm-l3"]},
                       "eval": {"swap_image_encoder": ["efficientnet-lite0", "efficientnet-lite2"]}})
    assert cfg.text_encoder == "minilm + 0.5*minilm-l3"
    assert cfg.text_encoders == {"es": "minilm + minilm-l3"}
    assert cfg.eval.swap_image_encoder == "efficientnet-lite0 + efficientnet-lite2"
    assert load_config(cfg.to_dict()).text_encoder == cfg.text_encoder  # the string form loads as itself
    assert ensemble_spec("minilm") == "minilm"  # one encoder stays a plain spec


@pytest.mark.parametrize(("value", "message"), [
    (["minilm", "minilm"], "'minilm' appears twice"),
    (["minilm", {"spec": "minilm-l3", "weight": 0}], r"text_encoder\[1\].*weight must be a positive number"),
    (["minilm", {"spec": "minilm-l3", "wieght": 2}], r"unknown key 'text_encoder\[1\].wieght'"),
    ([], "needs at least one encoder"),
    (["minilm", 3], r"'text_encoder\[1\]' must be str"),
])
def test_a_bad_member_is_refused_by_key(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({"text_encoder": value})


# -- the ensemble projector ------------------------------------------------------------------------------------

rng = np.random.default_rng(0)
A1, A2 = rng.standard_normal((40, 8)).astype(np.float32), rng.standard_normal((40, 5)).astype(np.float32)
X1, X2 = rng.standard_normal((7, 8)).astype(np.float32), rng.standard_normal((7, 5)).astype(np.float32)
OPTIONS = ProjectorConfig()


def _ensemble() -> EnsembleProjector:
    return make_projector(OPTIONS, [(8, 1.0), (5, 0.5)]).fit(np.hstack([A1, A2]))


def test_the_ensemble_vector_is_the_weighted_mean_of_its_members() -> None:
    want = l2_normalize(RelativeProjector(OPTIONS).fit(A1).transform(X1)
                        + 0.5 * RelativeProjector(OPTIONS).fit(A2).transform(X2))
    got = _ensemble().transform(np.hstack([X1, X2]))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got.shape == (7, 40)  # one coordinate per anchor, like any single encoder's relative vector
    assert isinstance(make_projector(OPTIONS, [(8, 1.0)]), RelativeProjector)


def test_each_member_is_invariant_to_its_own_rotation() -> None:
    q1 = np.linalg.qr(rng.standard_normal((8, 8)))[0].astype(np.float32)
    q2 = np.linalg.qr(rng.standard_normal((5, 5)))[0].astype(np.float32)
    rotated = make_projector(OPTIONS, [(8, 1.0), (5, 0.5)]).fit(np.hstack([A1 @ q1, A2 @ q2]))
    np.testing.assert_allclose(rotated.transform(np.hstack([X1 @ q1, X2 @ q2])),
                               _ensemble().transform(np.hstack([X1, X2])), atol=1e-5)


def test_absent_anchors_stay_zero_in_every_member() -> None:
    present = np.arange(0, 40, 2)
    p = make_projector(OPTIONS, [(8, 1.0), (5, 1.0)]).fit(np.hstack([A1, A2])[present], positions=present, total=40)
    out = p.transform(np.hstack([X1, X2]))
    assert out.shape == (7, 40) and not out[:, 1::2].any() and p.present == 20


def test_ensemble_and_plain_projectors_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "p.safetensors"
    save_projectors(path, {"image": RelativeProjector(OPTIONS).fit(A1), "text:en": _ensemble()})
    loaded = load_projectors(path, ["image", "text:en"], OPTIONS)
    assert isinstance(loaded["text:en"], EnsembleProjector) and isinstance(loaded["image"], RelativeProjector)
    x = np.hstack([X1, X2])
    np.testing.assert_array_equal(loaded["text:en"].transform(x), _ensemble().transform(x))
    with pytest.raises(ValueError, match="dim 13"):
        loaded["text:en"].transform(X1)


# -- real encoders: build, search, re-anchor, eval ----------------------------------------------------------------

TEXT = "minilm + minilm-l3"


@pytest.mark.slow
def test_a_query_side_member_is_added_without_reindexing(small_index: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    shutil.copytree(small_index, index)
    image_inode = (index / "image.faiss").stat().st_ino
    from pipeline.core.spaces import SpaceKey
    from pipeline.encoders import create_encoder
    from pipeline.space.anchors import AnchorSet

    r = Retriever.load(index)
    l6, l6_projector = r.encoder("text"), r.projectors[SpaceKey.text("en")]
    r = r.swap_encoder("text", ["minilm", "minilm-l3"], in_place=True)  # a list is the ensemble TEXT
    m = json.loads((index / "manifest.json").read_text())
    assert m["encoders"]["text"]["spec"] == TEXT and m["stored_by"]["text"]["spec"] == "minilm"
    assert m["encoders"]["text"]["dim"] == 768
    assert (index / "image.faiss").stat().st_ino == image_inode  # the gallery was not touched

    # The query vector is the mean of MiniLM-L6's relative vector (the index's own projector) and MiniLM-L3's,
    # each fitted on the index's anchors, composed here by hand.
    l3 = create_encoder("minilm-l3", "text")
    anchors, _ = AnchorSet.load(index / "anchors.parquet").text_vectors(l3, "en")
    query = "a smiling face with heart eyes"
    want = l2_normalize(l6_projector.transform(l6.encode([query]))
                        + RelativeProjector(l6_projector.options).fit(anchors).transform(l3.encode([query])))
    np.testing.assert_allclose(r.projectors[SpaceKey.text("en")].transform(r.encoder("text").encode([query])),
                               want, atol=1e-5)
    hits = Retriever.load(index).search(text=query, k=5)
    assert len(hits) == 5 and all(h.modality == "image" for h in hits)
    with pytest.raises(IndexMismatchError, match="minilm-l3"):
        Retriever.load(index, text_encoder="minilm")


@pytest.mark.slow
def test_an_ensemble_index_builds_and_searches(small_config, tmp_path: Path) -> None:
    cfg = load_config(small_config, **{"text_encoder": ["minilm", "minilm-l3"],
                                       "image_encoder": ["efficientnet-lite0", "efficientnet-lite2"],
                                       "data.languages": ["en"]})
    r = Retriever.build(cfg, tmp_path / "ens")
    m = r.manifest
    assert m.encoders[SpaceKey("image")].spec == "efficientnet-lite0 + efficientnet-lite2"
    assert m.encoders[SpaceKey("image")].dim == 1280 + 1280 and m.encoders[SpaceKey("text")].spec == TEXT
    loaded = Retriever.load(tmp_path / "ens")
    from pipeline.data import load_data

    assert [h.modality for h in loaded.search(text="grinning face", k=3)] == ["image"] * 3
    row = load_data(cfg.data)[0]
    hits = loaded.search(image=row["image"], k=10)
    assert all(h.modality == "text" for h in hits) and row["id"] in {h.id for h in hits}
    # the Ray engine ships encoders as their recipe: an ensemble must travel as one
    enc = pickle.loads(pickle.dumps(loaded.encoder("text")))
    assert enc.spec == TEXT and enc.blocks == ((384, 1.0), (384, 1.0))


@pytest.mark.slow
def test_eval_scores_an_ensemble_and_a_query_side_swap_to_one(small_config) -> None:
    from pipeline.evaluate import evaluate

    cfg = load_config(small_config, **{"text_encoder": ["minilm", "minilm-l3"], "eval.baselines": ["chance", "asif"]})
    report = evaluate(cfg)
    assert report["encoders"]["text"] == TEXT
    assert report["t2i"]["R@10"] > 2 * report["baselines"]["chance"]["t2i"]["R@10"]
    swap = evaluate(load_config(small_config, **{"eval.swap_text_encoder": TEXT, "eval.baselines": []}))
    assert swap["swap"]["text"] == TEXT and set(swap) >= {"t2i", "native", "cross_space"}
