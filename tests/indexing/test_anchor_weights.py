"""``projector.anchor_weights: agreement`` end to end: a real build searches, a reanchor keeps the build's weights,
and a build that cannot honour its settings is refused before any model loads."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import Retriever
from pipeline.config import Config, ConfigError, ProjectorConfig, load_config
from pipeline.core.spaces import IMAGE, SpaceKey
from pipeline.data import load_data
from pipeline.indexing.build import partial_dir
from pipeline.space.agreement import anchor_weights
from pipeline.space.anchors import AnchorSet
from pipeline.space.fit import stored_weights

ITEMS, ANCHORS = 60, 30


def weighted(small_config: Config, **overrides: object) -> Config:
    return load_config(small_config, **{"data.limit": ITEMS, "anchors.count": ANCHORS, "index.thumbnails": 0,
                                        "projector.anchor_weights": "agreement", **overrides})


@pytest.fixture(scope="module")
def weighted_index(small_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("weighted") / "idx"
    Retriever.build(weighted(small_config), out)
    return out


@pytest.mark.slow
def test_build_with_agreement_weights_searches(weighted_index: Path) -> None:
    r = Retriever.load(weighted_index)
    assert r.manifest.projector.anchor_weights == "agreement"
    weights = stored_weights(r.projectors)
    assert weights is not None and weights.shape == (ANCHORS,) and (weights > 0).all()
    assert not np.allclose(weights, weights[0])  # measured, not uniform
    # measured on the primary language's captions against the images, by the index's own encoders
    anchors = AnchorSet.load(weighted_index / "anchors.parquet")
    text, _ = anchors.text_vectors(r.encoder("text", "en"), "en")
    image = r.encoder("image").encode(anchors.images, ids=anchors.ids)
    np.testing.assert_allclose(weights, anchor_weights(text, image, ProjectorConfig(anchor_weights="agreement")), atol=1e-4)
    for space, p in r.projectors.items():  # every space was fitted with them (Spanish on its own anchors)
        got = p.anchor_weights
        assert got is not None
        np.testing.assert_array_equal(got, weights if p.positions is None else weights[p.positions], str(space))
    hits = r.search(text="a red heart", k=5)
    assert len(hits) == 5 and all(h.modality == "image" for h in hits)
    assert len(r.search(image=anchors.images[0], k=3)) == 3


@pytest.mark.slow
def test_reanchor_keeps_the_build_weights(weighted_index: Path, tmp_path: Path) -> None:
    before = Retriever.load(weighted_index)
    weights = stored_weights(before.projectors)
    image_coder = before.projectors[IMAGE].coder
    after = before.swap_encoder("text", "minilm-l3", out=tmp_path / "swapped")
    assert after.encoder("text").spec == "minilm-l3"
    for space in (SpaceKey.text("en"), SpaceKey.text("es")):
        p = after.projectors[space]
        assert p.dim != before.projectors[space].dim or not np.array_equal(p.anchors, before.projectors[space].anchors)
        np.testing.assert_array_equal(p.anchor_weights, weights if p.positions is None else weights[p.positions])
    # the image side, whose stored vectors stay, keeps its coder; weights measured anew would not match it
    np.testing.assert_array_equal(after.projectors[IMAGE].coder, image_coder)
    np.testing.assert_array_equal(stored_weights(after.projectors), weights)
    assert len(after.search(text="a red heart", k=5)) == 5


def test_a_build_it_cannot_honour_is_refused_before_any_model_loads(small_config: Config, tmp_path: Path) -> None:
    out = tmp_path / "never"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"projector\.anchor_weights: agreement .* projector\.ridge is null"):
        Retriever.build(weighted(small_config, **{"projector.ridge": None}), out)
    assert time.perf_counter() - t0 < 5  # no data read, no encoder loaded
    assert not out.exists() and not partial_dir(out).exists()


def test_an_anchor_file_without_primary_captions_is_refused_before_any_model_loads(
    small_config: Config, tmp_path: Path
) -> None:
    cfg = weighted(small_config, **{"anchors.path": str(tmp_path / "gap.parquet")})
    anchors = AnchorSet.from_dataset(load_data(cfg.data), np.arange(10), cfg.data.languages)
    anchors.captions["en"][3] = []  # an anchor without an English caption: its weight cannot be measured
    anchors.save(tmp_path / "gap.parquet")
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=r"anchor_weights: agreement pairs .* 1 of the 10 anchors .* have none"):
        Retriever.build(cfg, out)
    assert not out.exists() and not partial_dir(out).exists()
