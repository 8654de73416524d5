"""The one fitting rule against brute force, its anchor weights, and the settings it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError, ProjectorConfig, load_config
from pipeline.core.spaces import IMAGE, SpaceKey
from pipeline.space.agreement import anchor_weights
from pipeline.space.fit import AnchorVectors, check_options, fit_projectors, stored_weights
from pipeline.space.projectors import load_projectors, save_projectors

from .test_relative import brute_force

RNG = np.random.default_rng(7)
M = 30
IMG, EN, ES = RNG.standard_normal((M, 12)), RNG.standard_normal((M, 9)), RNG.standard_normal((M, 9))
X_IMG, X_TXT = RNG.standard_normal((20, 12)), RNG.standard_normal((20, 9))
PRESENT = np.array([i for i in range(M) if i % 4])  # Spanish lacks every fourth anchor's caption
EN_KEY, ES_KEY = SpaceKey.text("en"), SpaceKey.text("es")
WEIGHTED = ProjectorConfig(anchor_weights="agreement")


def sides(blocks: list[tuple[int, float]] | None = None) -> dict[SpaceKey, AnchorVectors]:
    return {IMAGE: AnchorVectors(IMG, blocks), EN_KEY: AnchorVectors(EN),
            ES_KEY: AnchorVectors(ES[PRESENT], positions=PRESENT)}


def test_default_config_matches_brute_force_with_a_missing_language_gap() -> None:
    o = ProjectorConfig()
    fitted = fit_projectors(sides(), o, total=M, pair=(EN_KEY, IMAGE))
    np.testing.assert_allclose(fitted[IMAGE].transform(X_IMG), brute_force(X_IMG, IMG, o), atol=1e-5)
    np.testing.assert_allclose(fitted[EN_KEY].transform(X_TXT), brute_force(X_TXT, EN, o), atol=1e-5)
    # a language without some anchors: brute force on the anchors it has, zero where it has none
    want = np.zeros((len(X_TXT), M))
    want[:, PRESENT] = brute_force(X_TXT, ES[PRESENT], o)
    np.testing.assert_allclose(fitted[ES_KEY].transform(X_TXT), want, atol=1e-5)
    assert all(p.anchor_weights is None for p in fitted.values()) and stored_weights(fitted) is None


def test_an_ensemble_side_is_the_weighted_mean_of_its_members() -> None:
    o = ProjectorConfig()
    fitted = fit_projectors(sides([(7, 1.0), (5, 0.5)]), o, total=M, pair=(EN_KEY, IMAGE))
    mean = brute_force(X_IMG[:, :7], IMG[:, :7], o) + 0.5 * brute_force(X_IMG[:, 7:], IMG[:, 7:], o)
    np.testing.assert_allclose(fitted[IMAGE].transform(X_IMG), mean / np.linalg.norm(mean, axis=1, keepdims=True),
                               atol=1e-5)


def test_agreement_weights_come_from_the_primary_pair_and_reach_every_side(tmp_path: Path) -> None:
    fitted = fit_projectors(sides([(7, 1.0), (5, 0.5)]), WEIGHTED, total=M, pair=(EN_KEY, IMAGE))
    w = anchor_weights(EN, IMG, WEIGHTED)
    assert w is not None and w.dtype == np.float32 and not np.allclose(w, w[0])  # not uniform: it can tell
    np.testing.assert_array_equal(stored_weights(fitted), w)
    np.testing.assert_array_equal(fitted[ES_KEY].anchor_weights, w[PRESENT])  # a gap keeps its anchors' weights
    unweighted = fit_projectors(sides(), ProjectorConfig(), total=M)
    assert not np.allclose(fitted[EN_KEY].transform(X_TXT), unweighted[EN_KEY].transform(X_TXT), atol=1e-3)
    # the projector file keeps them, and a refit from the stored weights (a reanchor) gives the same projector
    save_projectors(tmp_path / "p.safetensors", fitted)
    loaded = load_projectors(tmp_path / "p.safetensors", list(fitted), WEIGHTED)
    np.testing.assert_array_equal(stored_weights(loaded), w)
    refit = fit_projectors({ES_KEY: sides()[ES_KEY]}, WEIGHTED, total=M, weights=stored_weights(loaded))
    np.testing.assert_array_equal(refit[ES_KEY].coder, fitted[ES_KEY].coder)


def test_weights_need_both_sides_whole_or_stored() -> None:
    with pytest.raises(ValueError, match="fit both sides at once, or pass the stored weights"):
        fit_projectors({ES_KEY: sides()[ES_KEY]}, WEIGHTED, total=M)
    with pytest.raises(ValueError, match=r"only 22 of the 30 anchors are in text:es.*primary language"):
        fit_projectors(sides(), WEIGHTED, total=M, pair=(ES_KEY, IMAGE))
    with pytest.raises(ValueError, match="anchor weights given, but projector.anchor_weights is 'none'"):
        fit_projectors(sides(), ProjectorConfig(), total=M, weights=np.ones(M, np.float32))
    with pytest.raises(ValueError, match="expected 30 anchor weights"):
        fit_projectors(sides(), WEIGHTED, total=M, weights=np.ones(M - 1, np.float32))


@pytest.mark.parametrize(("overrides", "key"), [
    ({"projector.anchor_weights": "agreement", "projector.ridge": None}, "projector.ridge"),
    ({"projector.topk": 0}, "projector.topk"),
])
def test_options_no_fit_can_honour_are_refused_by_name(overrides: dict[str, object], key: str) -> None:
    options = load_config({}, **overrides).projector
    with pytest.raises(ConfigError, match=key):
        check_options(options)
    with pytest.raises(ConfigError, match=key):  # the fit itself says the same
        fit_projectors(sides(), options, total=M, pair=(EN_KEY, IMAGE))
