"""Two fixed maps from the literature, registered as methods: a product of invariances and local kernel-CKA.

- Product of invariances (Cannistraci et al., ICLR 2024, "From Bricks to Bridges"): relative vectors under
  several similarity functions (cosine, Euclidean, L1, L-inf), each invariant to a different group of
  transformations of the absolute space, aggregated with no trainable layer.
- Local kernel-CKA (Maniparambil et al., CVPR 2024): a candidate pair (image i, caption t) scores the CKA
  between the anchors' image kernel with i appended and their text kernel with t appended. It expands
  exactly into an inner product of two (m + 3)-dimensional unit vectors (:class:`LocalCKA`), so FAISS can
  search it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..config import ProjectorConfig
from ..core.registry import Registry
from ..core.spaces import IMAGE, TEXT, SpaceKey
from ..space.fit import AnchorVectors, fit_projectors
from ..space.relative import RelativeProjector, l2_normalize, signed_power
from .method_registry import SharedMaps, register_method

Distance = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (n, d), (m, d) -> (n, m) distances


@dataclass(frozen=True)
class Invariance:
    """A distance to the anchors, and the transformations of the absolute space that leave it unchanged."""

    distance: Distance
    invariant_to: str  # for documentation and tests: the group of transformations it ignores


def _cdist(metric: str) -> Distance:
    def dist(x: np.ndarray, a: np.ndarray) -> np.ndarray:
        from scipy.spatial.distance import cdist

        return cdist(np.asarray(x, np.float64), np.asarray(a, np.float64), metric=metric)

    return dist


# The cosine member is the configured projector itself (RelativeProjector); these are the distance members.
DISTANCES: Registry[Invariance] = Registry("invariance")
DISTANCES.add("euclidean", Invariance(_cdist("euclidean"), "isometries (rotations, reflections, translations)"))
DISTANCES.add("l1", Invariance(_cdist("cityblock"), "translations, axis permutations and sign flips"))
DISTANCES.add("linf", Invariance(_cdist("chebyshev"), "translations, axis permutations and sign flips"))


class DistanceBlock:
    """A relative space under a distance: s_j = 1 - d(x, a_j) / mean anchor-anchor distance, then the
    projector's signed power and ridge coding, then L2 normalisation.

    Dividing by the mean anchor distance makes the block invariant to rescaling, and puts an item that sits
    at a typical anchor-anchor distance at 0, as centred cosines do; so the power and the ridge coding of
    the default projector mean the same thing here.
    """

    def __init__(self, name: str, options: ProjectorConfig):
        self.invariance = DISTANCES.get(name)
        self.options = options
        self.anchors: np.ndarray | None = None  # (m, d) the absolute anchor embeddings
        self.scale = 1.0  # mean distance between two different anchors
        self.coder: np.ndarray | None = None  # (m, m) (K + lam I)^-1 over the anchors' block kernel

    def fit(self, anchors: np.ndarray) -> DistanceBlock:
        a = np.asarray(anchors, np.float32)
        d = self.invariance.distance(a, a)
        self.anchors = a
        self.scale = max(float(d[~np.eye(len(a), dtype=bool)].mean()), 1e-12)
        self.coder = None if self.options.ridge is None else ridge_coder(self._kernel(d), self.options.ridge)
        return self

    def _kernel(self, d: np.ndarray) -> np.ndarray:
        return signed_power(1.0 - d / self.scale, self.options.power)

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.anchors is None:
            raise RuntimeError("block is not fitted: call fit(anchors) first")
        s = self._kernel(self.invariance.distance(x, self.anchors))
        return l2_normalize(s if self.coder is None else s @ self.coder)


def ridge_coder(kernel: np.ndarray, ridge: float) -> np.ndarray:
    """(K + lam I)^-1 with lam = ridge * mean(diag K), symmetrised: the coding RelativeProjector applies."""
    k = np.asarray(kernel, np.float64)
    k = (k + k.T) / 2
    coder = np.linalg.inv(k + ridge * float(np.mean(np.diag(k))) * np.eye(len(k)))
    return ((coder + coder.T) / 2).astype(np.float32)


Aggregate = Callable[[list[np.ndarray]], np.ndarray]
AGGREGATES: Registry[Aggregate] = Registry("aggregation")
# Concatenation of the unit blocks, scaled so the result is unit: its inner product is the mean of the
# blocks' cosines (the paper's parameter-free aggregation). Sum: the blocks share coordinates (anchor j in
# each), so they can be added before normalising (the paper's sum, without its trainable layer).
AGGREGATES.add("concat", lambda blocks: np.concatenate(blocks, axis=1) / np.sqrt(len(blocks)))
AGGREGATES.add("sum", lambda blocks: l2_normalize(np.sum(blocks, axis=0)))


def product_space(at: np.ndarray, ai: np.ndarray, options: ProjectorConfig, members: tuple[str, ...],
                  aggregate: str = "concat") -> SharedMaps:
    """Relative spaces under each of ``members`` ("cosine": the configured projector; or a DISTANCES name),
    fitted per modality on the anchors and aggregated by ``aggregate``."""
    agg = AGGREGATES.get(aggregate)

    # The cosine member is the configured projector, fitted by the one rule (with its anchor weights, if any).
    cosine = fit_projectors({TEXT: AnchorVectors(at), IMAGE: AnchorVectors(ai)}, options, total=len(at),
                            pair=(TEXT, IMAGE)) if "cosine" in members else {}

    def side(key: SpaceKey, anchors: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        blocks = [cosine[key] if m == "cosine" else DistanceBlock(m, options).fit(anchors) for m in members]
        return lambda x: agg([b.transform(x) for b in blocks]).astype(np.float32)

    return SharedMaps(side(TEXT, at), side(IMAGE, ai))


ALL_MEMBERS = ("cosine", *DISTANCES.names())


@register_method("poi")
def _poi(at: np.ndarray, ai: np.ndarray, options: ProjectorConfig, seed: int, **_: object) -> SharedMaps:
    """Product of invariances: cosine (the configured projector), Euclidean, L1, L-inf; blocks concatenated."""
    return product_space(at, ai, options, ALL_MEMBERS, "concat")


@register_method("poi-sum")
def _poi_sum(at: np.ndarray, ai: np.ndarray, options: ProjectorConfig, seed: int, **_: object) -> SharedMaps:
    """Product of invariances with the blocks summed anchor by anchor."""
    return product_space(at, ai, options, ALL_MEMBERS, "sum")


def _single(name: str) -> Callable[..., SharedMaps]:
    def fit(at: np.ndarray, ai: np.ndarray, options: ProjectorConfig, seed: int, **_: object) -> SharedMaps:
        return product_space(at, ai, options, (name,))

    fit.__doc__ = f"One member of the product alone: the {name} relative space with the projector's steps."
    return fit


for _name in DISTANCES.names():
    register_method(f"rel-{_name}")(_single(_name))


# -- local kernel-CKA ---------------------------------------------------------------------------------------


class LocalCKA:
    """Local CKA as an inner product: image i and caption t map to unit vectors whose dot is
    CKA(K_i, L_t), K_i the (m+1)x(m+1) image kernel of the anchors with i appended, L_t the text one with t.

    Why it expands: with H the centring matrix of size n = m + 1, e the appended row and h = H e, the centred
    kernel is H K_i H = C_K + S(u~), C_K = H [[K, 0], [0, 0]] H, u~ = H (k_i, kappa_i / 2) and
    S(w) = w h^T + h w^T. S is linear and injective with <S(w), S(w')> = w^T G w', G = 2(h.h I + h h^T).
    Split C_K = S(p_K) + R_K with R_K orthogonal to every S(w) (G p_K = 2 C_K h). Then
    <H K_i H, H L_t H> = (u~ + p_K)^T G (v~ + p_L) + <R_K, R_L>: the image vector is
    [G^1/2 (u~ + p_K), g_K] and the text vector [G^1/2 (v~ + p_L), g_L], with g_K, g_L in R^2 any pair of
    vectors with Gram <R_., R_.>. Their norms are the Frobenius norms of the centred kernels, so after L2
    normalisation the dot product is the CKA exactly.
    """

    def __init__(self, kernel_anchors_img: np.ndarray, kernel_anchors_txt: np.ndarray):
        m = len(kernel_anchors_img)
        self.n = n = m + 1
        self.h = h = np.full(n, -1.0 / n)
        h[-1] += 1.0
        self.hh = float(h @ h)  # 1 - 1/n
        # G^1/2 = sqrt(2 h.h) (I + (sqrt2 - 1) P), P = h h^T / h.h; G^-1 = (I - P / 2) / (2 h.h)
        kernels = {"img": kernel_anchors_img, "txt": kernel_anchors_txt}
        centred = {side: self._centre(kern) for side, kern in kernels.items()}
        p = {s: (2 * (c @ h) - (2 * (c @ h) @ h) / (2 * self.hh) * h) / (2 * self.hh) for s, c in centred.items()}
        gram = {(a, b): float(np.sum(centred[a] * centred[b]) - self._g(p[a], p[b])) for a in p for b in p}
        rk = np.sqrt(max(gram["img", "img"], 0.0))
        cross = gram["img", "txt"] / rk if rk > 0 else 0.0
        self.p = p
        self.tail = {"img": np.array([rk, 0.0]),
                     "txt": np.array([cross, np.sqrt(max(gram["txt", "txt"] - cross**2, 0.0))])}

    def _centre(self, kern: np.ndarray) -> np.ndarray:
        k0 = np.zeros((self.n, self.n))
        k0[:-1, :-1] = (kern + kern.T) / 2
        k0 -= k0.mean(axis=0, keepdims=True)
        return k0 - k0.mean(axis=1, keepdims=True)

    def _g(self, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        """w^T G v, row by row (w may be (r, n))."""
        return 2 * (self.hh * (w @ v) + (w @ self.h) * (v @ self.h))

    def _g_half(self, w: np.ndarray) -> np.ndarray:
        return np.sqrt(2 * self.hh) * (w + (np.sqrt(2) - 1) * np.outer(w @ self.h, self.h) / self.hh)

    def vectors(self, side: str, k: np.ndarray, kappa: np.ndarray) -> np.ndarray:
        """Unit vectors (r, m + 3) for items with kernel rows ``k`` (r, m) to the anchors and self-kernel ``kappa``."""
        u = np.concatenate([np.asarray(k, np.float64), np.asarray(kappa, np.float64).reshape(-1, 1) / 2], axis=1)
        u -= u.mean(axis=1, keepdims=True)  # H u
        head = self._g_half(u + self.p[side])
        out = np.concatenate([head, np.broadcast_to(self.tail[side], (len(u), 2))], axis=1)
        return l2_normalize(out)


def local_cka_space(at: np.ndarray, ai: np.ndarray, options: ProjectorConfig) -> SharedMaps:
    """Local CKA with the kernel k(x, a) = signed_power(cos(x - mu, a - mu), power) of each modality."""
    kernel_options = replace(options, topk=None, column_norm=False, ridge=None, anchor_weights="none")  # no coder
    pt, pi = RelativeProjector(kernel_options).fit(at), RelativeProjector(kernel_options).fit(ai)

    def kern(p: RelativeProjector, x: np.ndarray) -> np.ndarray:
        return signed_power(p.cosine(x).astype(np.float64), options.power)

    cka = LocalCKA(kern(pi, ai), kern(pt, at))

    # The self-kernel kappa = k(x, x) is 1 for every item, as on the anchors' diagonal: cos(x - mu, x - mu) = 1.
    def side(p: RelativeProjector, name: str) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: cka.vectors(name, kern(p, x), np.ones(len(x))).astype(np.float32)

    return SharedMaps(side(pt, "txt"), side(pi, "img"))


@register_method("cka")
def _cka(at: np.ndarray, ai: np.ndarray, options: ProjectorConfig, seed: int, **_: object) -> SharedMaps:
    """Local linear CKA (Maniparambil et al.) over centred cosines to the anchors."""
    return local_cka_space(at, ai, replace(options, power=1.0))


@register_method("cka-p2")
def _cka_p2(at: np.ndarray, ai: np.ndarray, options: ProjectorConfig, seed: int, **_: object) -> SharedMaps:
    """Local CKA with the default projector's kernel: the signed square of centred cosines."""
    return local_cka_space(at, ai, replace(options, power=2.0))
