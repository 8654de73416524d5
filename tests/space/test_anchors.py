"""Anchor selectors and the parquet anchor set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.space.anchors import AnchorSet, list_selectors, select_anchors

FEATS = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)


@pytest.mark.parametrize("strategy", ["random", "kmeans", "fps", "stratified"])
def test_selectors_give_distinct_seeded_indices(strategy: str) -> None:
    a = select_anchors(300, 40, strategy=strategy, seed=3, features=FEATS)
    b = select_anchors(300, 40, strategy=strategy, seed=3, features=FEATS)
    assert len(a) == 40 and len(np.unique(a)) == 40 and a.min() >= 0 and a.max() < 300
    np.testing.assert_array_equal(a, b)


def test_fps_spreads_out_more_than_random() -> None:
    def min_pairwise(idx: np.ndarray) -> float:
        x = FEATS[idx] / np.linalg.norm(FEATS[idx], axis=1, keepdims=True)
        s = x @ x.T
        np.fill_diagonal(s, -1)
        return float(s.max())

    assert min_pairwise(select_anchors(300, 30, strategy="fps", features=FEATS)) < min_pairwise(
        select_anchors(300, 30, strategy="random")
    )


def test_unknown_strategy_lists_known() -> None:
    with pytest.raises(ValueError, match="known: " + ", ".join(list_selectors())):
        select_anchors(10, 3, strategy="magic")


def test_bad_counts() -> None:
    with pytest.raises(ValueError, match="cannot choose 20"):
        select_anchors(10, 20)
    with pytest.raises(ValueError, match="needs item features"):
        select_anchors(10, 3, strategy="kmeans")


def test_anchor_set_round_trip_and_hash(tmp_path: Path) -> None:
    s = AnchorSet(ids=["a", "b"], images=[b"png-a", b"png-b"], captions={"en": ["x", "y"], "es": ["xx", "yy"]})
    s.save(tmp_path / "a.parquet")
    t = AnchorSet.load(tmp_path / "a.parquet")
    assert t == s and t.hash == s.hash
    assert AnchorSet(["a", "b"], [b"png-a", b"png-B"], s.captions).hash != s.hash
    assert AnchorSet(["a", "b"], s.images, {"en": ["x", "z"], "es": ["xx", "yy"]}).hash != s.hash
