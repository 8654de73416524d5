"""The literature levers: local kernel-CKA against its direct formula, the product of invariances' invariances,
and pseudo-anchor mining on a planted set."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.config import ProjectorConfig
from pipeline.evaluate.literature import DISTANCES, LocalCKA, product_space
from pipeline.evaluate.methods import SharedMaps, fit_method
from pipeline.evaluate.pseudo_anchors import bootstrap, gate_margin, mutual_neighbours
from pipeline.space.relative import signed_power


def test_every_method_is_listed_in_a_fresh_interpreter() -> None:
    code = "from pipeline import list_methods; print(sorted(set(list_methods()) & {'poi', 'cka', 'relspace'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["['cka',", "'poi',", "'relspace']"]  # the literature methods register on import


def direct_cka(k: np.ndarray, l_: np.ndarray) -> float:
    """Linear-algebra CKA of two full (n, n) kernels, centred by H: the brute-force reference."""
    n = len(k)
    h = np.eye(n) - 1.0 / n
    kc, lc = h @ k @ h, h @ l_ @ h
    return float(np.sum(kc * lc) / np.linalg.norm(kc) / np.linalg.norm(lc))


def rbf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / x.shape[1])


@pytest.mark.parametrize("kernel", [lambda x, y: x @ y.T, rbf], ids=["linear", "rbf"])
def test_local_cka_expansion_equals_the_direct_formula(kernel) -> None:
    rng = np.random.default_rng(0)
    a_img, a_txt = rng.standard_normal((9, 6)), rng.standard_normal((9, 4))
    x_img, x_txt = rng.standard_normal((5, 6)), rng.standard_normal((7, 4))
    cka = LocalCKA(kernel(a_img, a_img), kernel(a_txt, a_txt))
    vi = cka.vectors("img", kernel(x_img, a_img), np.diag(kernel(x_img, x_img)))
    vt = cka.vectors("txt", kernel(x_txt, a_txt), np.diag(kernel(x_txt, x_txt)))
    direct = np.array([[direct_cka(kernel(np.vstack([a_img, i]), np.vstack([a_img, i])),
                                   kernel(np.vstack([a_txt, t]), np.vstack([a_txt, t]))) for t in x_txt] for i in x_img])
    np.testing.assert_allclose(np.linalg.norm(vi, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(vi @ vt.T, direct, atol=1e-5)
    assert direct.std() > 1e-3  # the candidates really score differently


def test_cka_method_scores_the_local_cka_of_the_projector_kernel() -> None:
    rng = np.random.default_rng(1)
    at, ai = rng.standard_normal((12, 5)).astype(np.float32), rng.standard_normal((12, 8)).astype(np.float32)
    xt, xi = rng.standard_normal((4, 5)).astype(np.float32), rng.standard_normal((3, 8)).astype(np.float32)
    space = fit_method("cka-p2", at, ai, ProjectorConfig())
    mt, mi = at.mean(0), ai.mean(0)

    def kern(x: np.ndarray, mu: np.ndarray) -> np.ndarray:  # signed square of the centred cosine
        u = (x - mu) / np.linalg.norm(x - mu, axis=1, keepdims=True)
        return signed_power(u @ u.T, 2.0)

    direct = np.array([[direct_cka(kern(np.vstack([ai, i]), mi), kern(np.vstack([at, t]), mt)) for t in xt]
                       for i in xi])
    np.testing.assert_allclose(space.image(xi) @ space.text(xt).T, direct, atol=1e-5)


def test_faiss_inner_product_search_ranks_by_local_cka() -> None:
    import faiss

    rng = np.random.default_rng(5)
    at, ai = rng.standard_normal((20, 6)).astype(np.float32), rng.standard_normal((20, 7)).astype(np.float32)
    xt, xi = rng.standard_normal((6, 6)).astype(np.float32), rng.standard_normal((50, 7)).astype(np.float32)
    space = fit_method("cka", at, ai, ProjectorConfig())
    index = faiss.IndexFlatIP(space.image(xi).shape[1])
    index.add(space.image(xi))
    _, found = index.search(space.text(xt), 5)
    mt, mi = at.mean(0), ai.mean(0)

    def kern(x: np.ndarray, mu: np.ndarray) -> np.ndarray:  # cosine of centred vectors: the linear kernel
        u = (x - mu) / np.linalg.norm(x - mu, axis=1, keepdims=True)
        return u @ u.T

    direct = np.array([[direct_cka(kern(np.vstack([ai, i]), mi), kern(np.vstack([at, t]), mt)) for i in xi]
                       for t in xt])
    np.testing.assert_array_equal(found, np.argsort(-direct, axis=1, kind="stable")[:, :5])


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _member(name: str, anchors: np.ndarray, x: np.ndarray) -> np.ndarray:
    return product_space(anchors, anchors, ProjectorConfig(), (name,)).text(x)


@pytest.mark.parametrize("name", ["cosine", *DISTANCES.names()])
def test_each_member_ignores_its_group_and_only_the_isometric_ones_ignore_rotation(name: str) -> None:
    rng = np.random.default_rng(2)
    anchors, x = rng.standard_normal((30, 10)), rng.standard_normal((20, 10))
    base = _member(name, anchors, x)
    perm = np.eye(10)[rng.permutation(10)] * rng.choice([-1.0, 1.0], size=10)  # axis permutation and sign flips
    shift = rng.standard_normal(10)
    for t in (perm, 3.5 * np.eye(10)):  # every member ignores these (and a translation)
        np.testing.assert_allclose(_member(name, anchors @ t + shift, x @ t + shift), base, atol=1e-4)
    q = _orthogonal(10, rng)
    rotated = _member(name, anchors @ q, x @ q)
    if name in ("cosine", "euclidean"):
        np.testing.assert_allclose(rotated, base, atol=1e-4)
    else:  # L1 and L-inf are not rotation invariant: a rotation moves them
        assert np.abs(rotated - base).max() > 1e-2


def test_concatenation_scores_the_mean_of_the_member_cosines() -> None:
    rng = np.random.default_rng(3)
    at, ai = rng.standard_normal((40, 6)), rng.standard_normal((40, 9))
    xt, xi = rng.standard_normal((5, 6)), rng.standard_normal((5, 9))
    members = ("cosine", *DISTANCES.names())
    poi = product_space(at, ai, ProjectorConfig(), members)
    singles = [product_space(at, ai, ProjectorConfig(), (m,)) for m in members]
    mean = np.mean([s.text(xt) @ s.image(xi).T for s in singles], axis=0)
    np.testing.assert_allclose(poi.text(xt) @ poi.image(xi).T, mean, atol=1e-5)
    np.testing.assert_allclose(singles[0].text(xt), fit_method("relspace", at, ai).text(xt), atol=1e-6)


# -- pseudo-anchors -----------------------------------------------------------------------------------------


def test_mutual_neighbours_find_the_mutual_pairs_and_their_margins() -> None:
    s = np.array([[0.9, 0.1, 0.0],   # caption 0 <-> image 0, gaps 0.8 (row) and 0.9 - 0.5 (column)
                  [0.5, 0.2, 0.3],   # caption 1's best image 0 prefers caption 0: not mutual
                  [0.0, 0.6, 0.7]])  # caption 2 <-> image 2, gaps 0.1 (row) and 0.7 - 0.3 (column)
    c = mutual_neighbours(s)
    assert c.text.tolist() == [0, 2] and c.image.tolist() == [0, 2]
    np.testing.assert_allclose(c.margin, [0.4, 0.1])
    with pytest.raises(ValueError, match="at least 2 captions and 2 images"):
        mutual_neighbours(np.ones((1, 5)))


def test_the_gate_picks_the_lowest_margin_that_keeps_precision() -> None:
    margin = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    correct = np.array([1, 1, np.nan, 1, 0, 0])  # above 0.6: 3/3 judged right; 0.5: 3/4; 0.4: 3/5
    assert gate_margin(margin, correct, 0.75, 1) == 0.5
    assert gate_margin(margin, correct, 1.0, 1) == 0.6
    assert gate_margin(margin, correct, 1.0, 4) is None  # three judged pairs are not enough evidence
    with pytest.raises(ValueError, match="precision gate"):
        gate_margin(margin, correct, 0.0, 1)


def _planted(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two views of n latent points: text is a linear image, image a rotated one, each with its own noise."""
    z = rng.standard_normal((n, 8))
    text = z @ rng.standard_normal((8, 12)) + noise * rng.standard_normal((n, 12))
    image = z @ _orthogonal(8, rng) + noise * rng.standard_normal((n, 8))
    return text.astype(np.float32), image.astype(np.float32)


def test_bootstrap_adds_planted_pairs_when_dev_precision_passes_and_nothing_when_the_gate_is_out_of_reach() -> None:
    rng = np.random.default_rng(4)
    text, image = _planted(260, 0.3, rng)
    anchors, pool = np.arange(40), np.arange(40, 260)
    perm = rng.permutation(len(pool))  # the image pool comes shuffled: pairing is not given by position
    pool_t, pool_i = text[pool], image[pool][perm]
    dev = set(range(40, 120))

    def judge(t: np.ndarray, i: np.ndarray) -> np.ndarray:
        a, b = pool[t], pool[perm[i]]
        known = np.array([x in dev or y in dev for x, y in zip(a, b)])
        return np.where(known, (a == b).astype(float), np.nan)

    def fit(at: np.ndarray, ai: np.ndarray) -> SharedMaps:
        return fit_method("relspace", at, ai, ProjectorConfig())

    at, ai, hist = bootstrap(fit, text[anchors], image[anchors], pool_t, pool_i, judge, precision=0.9, rounds=2)
    assert hist[0].added >= 20 and hist[0].dev_precision >= 0.9
    added_t = np.concatenate([h.added_text for h in hist])
    added_i = np.concatenate([h.added_image for h in hist])
    assert len(at) == len(ai) == 40 + len(added_t) and len(set(added_t)) == len(added_t)  # no pool item twice
    assert np.mean(pool[added_t] == pool[perm[added_i]]) >= 0.85  # the planted pairs are what it found
    np.testing.assert_array_equal(at[40:], pool_t[added_t])

    _, _, none = bootstrap(fit, text[anchors], image[anchors], pool_t, pool_i,
                           lambda t, i: np.zeros(len(t)), precision=0.5, rounds=2)  # every judged pair wrong
    assert len(none) == 1 and none[0].added == 0 and none[0].threshold is None
