"""Fitted projectors by space: one encoder's :class:`RelativeProjector`, or an ensemble's, and their file.

An ensemble's relative vector is the weighted mean of its members' L2-normalised relative vectors,
normalised again. Every member is fitted on the same anchors, so all of them (and any other encoder's) live
in one anchor-indexed space: a query side may have other members than the stored side, and the inner
product stays a cosine over the shared anchors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..config import ProjectorConfig
from .relative import RelativeProjector, l2_normalize

K = TypeVar("K")  # a projector's name: a string or a SpaceKey, written as str()
Blocks = Sequence[tuple[int, float]]  # (width, weight) of each member's columns in the absolute vectors


class EnsembleProjector:
    """One :class:`RelativeProjector` per member, over that member's columns of the concatenated embedding."""

    def __init__(self, options: ProjectorConfig | None, blocks: Blocks):
        if len(blocks) < 2:
            raise ValueError("an ensemble projector needs at least two members")
        self.options = options or ProjectorConfig()
        self.weights = np.asarray([w for _, w in blocks], dtype=np.float32)
        self.bounds = np.cumsum([0, *(d for d, _ in blocks)])
        self.members = [RelativeProjector(self.options) for _ in blocks]

    @property
    def total(self) -> int:
        return self.members[0].total

    num_anchors = total

    @property
    def present(self) -> int:
        return self.members[0].present

    @property
    def positions(self) -> np.ndarray | None:
        return self.members[0].positions

    @property
    def anchor_weights(self) -> np.ndarray | None:
        return self.members[0].anchor_weights  # every member is fitted with the same weights

    @property
    def dim(self) -> int:
        return int(self.bounds[-1])

    def _columns(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dim {self.dim} (the ensemble's members side by side), "
                             f"got shape {x.shape}")
        return [x[:, a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:])]

    def fit(
        self, anchors: np.ndarray, *, positions: np.ndarray | None = None, total: int | None = None,
        weights: np.ndarray | None = None,
    ) -> EnsembleProjector:
        """Fit every member on its columns of the same anchors (see :meth:`RelativeProjector.fit`)."""
        for p, a in zip(self.members, self._columns(anchors)):
            p.fit(a, positions=positions, total=total, weights=weights)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """The weighted mean of the members' relative vectors, L2-normalised: (n, anchors) float32."""
        out = np.zeros((len(x), self.total), dtype=np.float32)
        for p, w, cols in zip(self.members, self.weights, self._columns(x)):
            out += w * p.transform(cols)
        return l2_normalize(out)

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        state = {f"{prefix}.weights": self.weights, f"{prefix}.bounds": self.bounds.astype(np.int64)}
        for i, p in enumerate(self.members):
            state.update(p.state(f"{prefix}.member{i}"))
        return state

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str, options: ProjectorConfig) -> EnsembleProjector:
        weights, bounds = state[f"{prefix}.weights"], state[f"{prefix}.bounds"]
        p = cls(options, [(int(b - a), float(w)) for a, b, w in zip(bounds[:-1], bounds[1:], weights)])
        p.members = [RelativeProjector.from_state(state, f"{prefix}.member{i}", options) for i in range(len(weights))]
        return p


Projector = RelativeProjector | EnsembleProjector


def make_projector(options: ProjectorConfig | None, blocks: Blocks | None = None) -> Projector:
    """The projector for an encoder's output layout (``Encoder.blocks``): one block is a plain projector."""
    if blocks is None or len(blocks) == 1:
        return RelativeProjector(options)
    return EnsembleProjector(options, blocks)


def save_projectors(path: str | Path, projectors: Mapping[Any, Projector]) -> None:
    """Write several projectors (keyed by space name, e.g. a ``SpaceKey``) into one safetensors file.

    Serialised to bytes and written by ``open``, so the file's mode follows the umask like the index's other
    files: safetensors' ``save_file`` creates it 0600, unreadable to the group that serves the index.
    """
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {}
    for name, p in projectors.items():
        tensors.update({k: np.ascontiguousarray(v, dtype=np.int64 if v.dtype.kind == "i" else np.float32)
                        for k, v in p.state(str(name)).items()})
    Path(path).write_bytes(save(tensors))


def load_projectors(path: str | Path, names: Sequence[K], options: ProjectorConfig) -> dict[K, Projector]:
    """Read projectors written by :func:`save_projectors` (safetensors: no code is executed)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"projector file missing: {path}; the index is incomplete: rebuild it")
    try:
        state = load_file(str(path))
    except SafetensorError as e:  # its text ("incomplete metadata, file not fully covered") names no file
        raise ValueError(f"projector file {path} is damaged (truncated or not safetensors); rebuild the index") from e

    def load(name: str) -> Projector:
        kind = EnsembleProjector if f"{name}.weights" in state else RelativeProjector
        return kind.from_state(state, name, options)

    try:
        return {n: load(str(n)) for n in names}
    except (KeyError, ValueError) as e:  # a tensor the manifest expects is absent: say which file lacks it
        what = f"projector file has no tensor {e.args[0]!r}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{path}: {what}; rebuild the index") from None
