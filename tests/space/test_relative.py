"""The projector against brute force, its invariances, and its safetensors round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ProjectorConfig
from pipeline.space.projectors import load_projectors, save_projectors
from pipeline.space.relative import RelativeProjector, signed_power, topk_sparsify

RNG = np.random.default_rng(0)
ANCHORS = RNG.standard_normal((40, 16)).astype(np.float32)
X = RNG.standard_normal((25, 16)).astype(np.float32)
OPTIONS = [
    ProjectorConfig(center=False, topk=None, power=1.0, column_norm=False, ridge=None),
    ProjectorConfig(center=True, topk=None, power=1.0, column_norm=False, ridge=None),
    ProjectorConfig(center=True, topk=8, power=3.0, column_norm=False, ridge=None),
    ProjectorConfig(center=True, topk=8, power=1.0, column_norm=True, ridge=None),
    ProjectorConfig(),  # the default: centred, signed square, ridge coding
    ProjectorConfig(center=True, topk=8, power=2.0, column_norm=True, ridge=0.5),
]


def brute_force(x: np.ndarray, a: np.ndarray, o: ProjectorConfig) -> np.ndarray:
    """The method of DESIGN.md written out loop by loop."""
    mu = a.mean(0) if o.center else np.zeros(a.shape[1])
    ac = [(aj - mu) / np.linalg.norm(aj - mu) for aj in a]
    sims = np.array([[np.dot(ai, aj) for aj in ac] for ai in ac])
    np.fill_diagonal(sims, np.nan)
    cm, cs = np.nanmean(sims, 0), np.maximum(np.nanstd(sims, 0), 1e-6)

    def kernel(r: np.ndarray) -> np.ndarray:
        if o.column_norm:
            r = (r - cm) / cs
        if o.topk:
            thresh = np.sort(r)[-o.topk]
            r = np.where(r >= thresh, r, 0.0)
        return np.sign(r) * np.abs(r) ** o.power

    if o.ridge is not None:
        big_k = np.array([kernel(np.array([np.dot(ai, aj) for aj in ac])) for ai in ac])
        big_k = (big_k + big_k.T) / 2
        lam = o.ridge * np.mean(np.diag(big_k))
    out = []
    for xi in x:
        xc = (xi - mu) / np.linalg.norm(xi - mu)
        r = kernel(np.array([np.dot(xc, aj) for aj in ac]))
        if o.ridge is not None:
            r = np.linalg.solve(big_k + lam * np.eye(len(ac)), r)  # w = (K + lam I)^-1 k
        out.append(r / np.linalg.norm(r))
    return np.array(out)


@pytest.mark.parametrize("o", OPTIONS, ids=str)
def test_matches_brute_force(o: ProjectorConfig) -> None:
    got = RelativeProjector(o).fit(ANCHORS).transform(X)
    np.testing.assert_allclose(got, brute_force(X, ANCHORS, o), atol=1e-5)


@pytest.mark.parametrize("o", OPTIONS, ids=str)
def test_invariant_to_rotation_and_scale(o: ProjectorConfig) -> None:
    """Relative vectors depend on angles only: a random orthogonal map or a rescale changes nothing."""
    q, _ = np.linalg.qr(RNG.standard_normal((16, 16)))
    base = RelativeProjector(o).fit(ANCHORS).transform(X)
    for a, x in ((ANCHORS @ q, X @ q), (ANCHORS * 7.5, X * 7.5)):
        np.testing.assert_allclose(RelativeProjector(o).fit(a).transform(x), base, atol=1e-5)


def test_translation_invariant_only_when_centred() -> None:
    shift = RNG.standard_normal(16).astype(np.float32) * 3
    centred = ProjectorConfig(center=True, topk=None, column_norm=False, ridge=None)
    plain = ProjectorConfig(center=False, topk=None, column_norm=False, ridge=None)
    a = RelativeProjector(centred).fit(ANCHORS).transform(X)
    b = RelativeProjector(centred).fit(ANCHORS + shift).transform(X + shift)
    np.testing.assert_allclose(a, b, atol=1e-5)
    c = RelativeProjector(plain).fit(ANCHORS).transform(X)
    d = RelativeProjector(plain).fit(ANCHORS + shift).transform(X + shift)
    assert np.abs(c - d).max() > 1e-2


def test_outputs_are_unit_norm_and_sparse() -> None:
    r = RelativeProjector(ProjectorConfig(topk=5, ridge=None)).fit(ANCHORS).transform(X)
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1.0, atol=1e-5)
    assert ((r != 0).sum(axis=1) <= 5).all()


def test_chunked_transform_equals_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.space.relative as rel

    p = RelativeProjector(ProjectorConfig(topk=7)).fit(ANCHORS)
    whole = p.transform(X)
    monkeypatch.setattr(rel, "CHUNK", 4)
    np.testing.assert_allclose(p.transform(X), whole, atol=1e-6)  # BLAS may block differently


def test_helpers() -> None:
    s = np.array([[0.1, -0.5, 0.3, 0.2]])
    np.testing.assert_array_equal(topk_sparsify(s, 2), [[0.0, 0.0, 0.3, 0.2]])
    np.testing.assert_allclose(signed_power(np.array([-0.5, 0.5]), 2.0), [-0.25, 0.25])


def test_save_load_round_trip(tmp_path: Path) -> None:
    o = ProjectorConfig(topk=6, power=2.0)
    ps = {"image": RelativeProjector(o).fit(ANCHORS), "text:en": RelativeProjector(o).fit(ANCHORS[:, :8])}
    save_projectors(tmp_path / "p.safetensors", ps)
    loaded = load_projectors(tmp_path / "p.safetensors", ["image", "text:en"], o)
    np.testing.assert_array_equal(loaded["image"].transform(X), ps["image"].transform(X))
    np.testing.assert_array_equal(loaded["text:en"].transform(X[:, :8]), ps["text:en"].transform(X[:, :8]))
    with pytest.raises(ValueError, match="text:fr"):
        load_projectors(tmp_path / "p.safetensors", ["text:fr"], o)


def test_errors() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        RelativeProjector().transform(X)
    p = RelativeProjector().fit(ANCHORS)
    with pytest.raises(ValueError, match="dim 16"):
        p.transform(X[:, :5])
    with pytest.raises(ValueError, match="NaN"):
        RelativeProjector().fit(np.full((4, 3), np.nan))
