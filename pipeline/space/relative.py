"""The relative projector: an item becomes its (centred) cosine similarities to the anchors of its modality."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

import numpy as np

from ..config import ProjectorConfig

logger = logging.getLogger(__name__)

# Rows are projected in chunks so that a million-item transform never holds n x m float64 at once.
CHUNK = 16_384
EPS = 1e-12
# BLAS runs on one thread in every transform. Its results depend on its thread count (by ~1e-6, which
# the ridge coder can amplify past 1e-5), so a fixed count makes the relative vectors the same in any
# process, on any engine and core count: a Ray actor's shard equals the local build's. The products are
# small beside an encoder forward. For queries it also avoids BLAS workers spinning after a threaded call,
# which took a core from the next encoder forward (benchmarks/README.md: query p50 2.2-2.6x the bare path
# on 2 cores, 1.09x on one thread).


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    return _blas_controller().limit(limits=1, user_api="blas")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation; zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, EPS)


def topk_sparsify(s: np.ndarray, k: int) -> np.ndarray:
    """Keep each row's k largest entries and zero the rest (ASIF's sparsification)."""
    if k >= s.shape[1]:
        return s
    drop = np.argpartition(s, s.shape[1] - k, axis=1)[:, : s.shape[1] - k]
    out = s.copy()
    np.put_along_axis(out, drop, 0.0, axis=1)
    return out


def signed_power(s: np.ndarray, p: float) -> np.ndarray:
    """sign(s) * |s|^p: sharpens (p > 1) without flipping negative similarities."""
    return s if p == 1.0 else np.sign(s) * np.abs(s) ** p


class RelativeProjector:
    """Fit on one modality's anchor embeddings; transform absolute vectors into the relative space.

    The relative vector is r(x) = [cos(x - mu, a_j - mu)]_j, optionally standardised per anchor,
    sparsified to its top-k entries, and raised to a signed power. With ``ridge`` set, it is then
    coded by the anchor weights w = (K + ridge I)^-1 r that rebuild it, K being the same kernel
    among the anchors: many near-duplicate anchors otherwise dominate every similarity profile. It
    is L2-normalised last, so that inner product search is cosine search.

    When some anchors lack this modality or language (a missing translation), the projector is fitted on
    the anchors that have it, and ``positions`` says where each sits in the full anchor set: the output
    keeps one coordinate per anchor of the set, zero for the absent ones, so that it stays comparable
    with the other modality's vectors (their inner product then runs over the shared anchors).
    """

    def __init__(self, options: ProjectorConfig | None = None):
        self.options = options or ProjectorConfig()
        self.anchors: np.ndarray | None = None  # (m, d) centred, L2-normalised anchor embeddings
        self.mean: np.ndarray | None = None  # (d,) anchor mean (zeros when centring is off)
        self.col_mean: np.ndarray | None = None  # (m,) per-anchor similarity mean over the anchors
        self.col_std: np.ndarray | None = None  # (m,) per-anchor similarity std over the anchors
        self.coder: np.ndarray | None = None  # (m, m) (K + ridge I)^-1, when ridge coding is on
        self.positions: np.ndarray | None = None  # (m,) each anchor's index in the full set; None: all present
        # (m,) the anchor weights it was fitted with, kept so that a refit (reanchor) reuses them; None: unweighted
        self.anchor_weights: np.ndarray | None = None
        self.total = 0  # anchors in the full set: the output width

    @property
    def num_anchors(self) -> int:
        """Width of the relative vectors: every anchor of the set, present or not."""
        return self.total

    @property
    def present(self) -> int:
        """How many anchors of the set have this modality or language."""
        return 0 if self.anchors is None else len(self.anchors)

    @property
    def dim(self) -> int:
        """Dimension of the absolute space this projector reads."""
        return 0 if self.anchors is None else self.anchors.shape[1]

    def fit(
        self, anchors: np.ndarray, *, positions: np.ndarray | None = None, total: int | None = None,
        weights: np.ndarray | None = None,
    ) -> RelativeProjector:
        """Store the anchors' statistics; the anchors are absolute embeddings of one modality.

        Args:
            anchors: (m, d) embeddings of the anchors that have this modality (or language).
            positions: where each of them sits in the full anchor set; None when all are present.
            total: the size of the full anchor set (needed with ``positions``).
            weights: (m,) positive per-anchor weights of the ridge coder, the same for every modality (see
                :func:`pipeline.space.fit.fit_projectors`); required when ``options.anchor_weights`` is not "none".
        """
        a = np.asarray(anchors, dtype=np.float32)
        if a.ndim != 2 or len(a) < 2:
            raise ValueError(f"need a 2-D array of at least 2 anchor embeddings, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("anchor embeddings contain NaN or inf")
        self.total = len(a) if total is None else int(total)
        self.positions = None
        if positions is not None:
            positions = np.asarray(positions, dtype=np.int64)
            if len(positions) != len(a) or len(np.unique(positions)) != len(a) or not (
                    0 <= positions.min() and positions.max() < self.total):
                raise ValueError(f"positions must be {len(a)} distinct anchor indices below {self.total}")
            if not np.array_equal(positions, np.arange(self.total)):
                self.positions = positions
        elif self.total != len(a):
            raise ValueError(f"{len(a)} anchor embeddings for a set of {self.total}: say where they sit (positions)")
        self.mean = a.mean(axis=0) if self.options.center else np.zeros(a.shape[1], np.float32)
        self.anchors = l2_normalize(a - self.mean)
        sims = (self.anchors @ self.anchors.T).astype(np.float64)
        off = ~np.eye(len(sims), dtype=bool)  # an anchor's similarity to itself says nothing of the column's spread
        cols = sims.T[off].reshape(len(sims), -1)  # row j: anchor j's similarities to the other anchors
        self.col_mean = cols.mean(axis=1).astype(np.float32)
        self.col_std = np.maximum(cols.std(axis=1), 1e-6).astype(np.float32)
        self.coder = None
        penalty = self._penalty(len(a), weights)
        self.anchor_weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        if self.options.ridge is not None:
            # K: the anchors seen through the same steps as any item, so that k and K are one kernel.
            kernel = self._kernel(self.anchors @ self.anchors.T).astype(np.float64)
            kernel = (kernel + kernel.T) / 2  # top-k can break symmetry; the kernel must not
            lam = self.options.ridge * float(np.mean(np.diag(kernel)))
            coder = np.linalg.inv(kernel + lam * np.diag(penalty))
            self.coder = ((coder + coder.T) / 2).astype(np.float32)
        return self

    def _penalty(self, m: int, weights: np.ndarray | None) -> np.ndarray:
        """Each anchor's share of the ridge penalty: 1, or the mean weight over its own, so that an anchor the
        modalities disagree on is shrunk harder while the overall strength stays ``ridge``."""
        if self.options.anchor_weights == "none":
            if weights is not None:  # weights that would be silently ignored point to a mixed-up config
                raise ValueError("anchor weights given, but projector.anchor_weights is 'none'")
            return np.ones(m)
        if weights is None or self.options.ridge is None:
            raise ValueError(f"projector.anchor_weights={self.options.anchor_weights!r} weights the ridge coder "
                             "from both modalities' anchors: set projector.ridge, and fit with "
                             "pipeline.space.fit.fit_projectors()")
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (m,) or not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError(f"anchor weights must be {m} positive finite numbers, got shape {w.shape}")
        return w.mean() / w

    def cosine(self, x: np.ndarray) -> np.ndarray:
        """The raw (optionally centred) cosine to every anchor, before any post-processing."""
        self._check_fitted(x)
        return l2_normalize(np.asarray(x, np.float32) - self.mean) @ self.anchors.T

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map absolute vectors (n, d) to relative vectors (n, m), L2-normalised float32."""
        x = np.asarray(x, dtype=np.float32)
        self._check_fitted(x)
        out = np.empty((len(x), self.num_anchors), dtype=np.float32)
        with _one_blas_thread():
            for start in range(0, len(x), CHUNK):
                out[start : start + CHUNK] = self._transform_chunk(x[start : start + CHUNK])
        return out

    def _transform_chunk(self, x: np.ndarray) -> np.ndarray:
        s = self._kernel(self.cosine(x))
        if self.coder is not None:
            s = s @ self.coder
        s = l2_normalize(s)
        if self.positions is None:
            return s
        full = np.zeros((len(s), self.total), dtype=np.float32)  # absent anchors: zero, so they add nothing
        full[:, self.positions] = s
        return full

    def _kernel(self, s: np.ndarray) -> np.ndarray:
        """Per-entry steps on raw cosines: column standardisation, top-k, signed power."""
        o = self.options
        if o.column_norm:
            s = (s - self.col_mean) / self.col_std
        if o.topk:
            s = topk_sparsify(s, o.topk)
        return signed_power(s, o.power)

    def _check_fitted(self, x: np.ndarray) -> None:
        if self.anchors is None:
            raise RuntimeError("projector is not fitted: call fit(anchors) first")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dim {self.dim}, got shape {x.shape}")

    # -- persistence: safetensors only, options live in the manifest -------------------------------

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        assert self.anchors is not None, "projector is not fitted"
        state = {
            f"{prefix}.anchors": self.anchors,
            f"{prefix}.mean": self.mean,
            f"{prefix}.col_mean": self.col_mean,
            f"{prefix}.col_std": self.col_std,
        }
        if self.coder is not None:
            state[f"{prefix}.coder"] = self.coder
        if self.anchor_weights is not None:
            state[f"{prefix}.anchor_weights"] = self.anchor_weights
        if self.positions is not None:
            state[f"{prefix}.positions"] = self.positions
            state[f"{prefix}.total"] = np.array([self.total], dtype=np.int64)
        return state

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str, options: ProjectorConfig) -> RelativeProjector:
        p = cls(options)
        try:
            p.anchors, p.mean = state[f"{prefix}.anchors"], state[f"{prefix}.mean"]
            p.col_mean, p.col_std = state[f"{prefix}.col_mean"], state[f"{prefix}.col_std"]
            p.coder = state[f"{prefix}.coder"] if options.ridge is not None else None
            p.anchor_weights = state.get(f"{prefix}.anchor_weights")
            if f"{prefix}.positions" in state:
                p.positions = state[f"{prefix}.positions"].astype(np.int64)
                p.total = int(state[f"{prefix}.total"][0])
            else:
                p.total = len(p.anchors)
        except KeyError as e:
            raise ValueError(f"projector file has no tensor {e.args[0]!r}") from None
        return p
