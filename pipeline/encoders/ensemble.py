"""An ensemble of encoders of one modality, seen by the pipeline as one encoder with concatenated outputs.

Relative vectors of several encoders of the same modality live in the same anchor-indexed space, so they can
be averaged: each member gets its own projector on the same anchors (``projectors.EnsembleProjector`` splits
the concatenated output back into the members' blocks). The gallery and the query side need not have the same
members, which is what lets a query-side member be added to a built index by re-anchoring alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.specs import Member, format_members
from .base import Encoder


class EnsembleEncoder(Encoder):
    """Members' vectors side by side: ``encode`` is the concatenation, ``blocks`` says where each member sits."""

    def __init__(self, members: Sequence[tuple[Encoder, float]]):
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two encoders")
        modalities = {enc.modality for enc, _ in members}
        if len(modalities) != 1:
            raise ValueError(f"ensemble members embed different modalities: {sorted(modalities)}")
        self.encoders = [enc for enc, _ in members]
        self.weights = [float(w) for _, w in members]
        self.modality = self.encoders[0].modality
        self.spec = format_members([Member(e.spec, w) for e, w in members])
        self._dim = sum(e.dim for e in self.encoders)
        self._version = " + ".join(e.version for e in self.encoders)

    @property
    def members(self) -> list[Encoder]:
        return self.encoders

    @property
    def blocks(self) -> tuple[tuple[int, float], ...]:
        return tuple((e.dim, w) for e, w in zip(self.encoders, self.weights))

    @property
    def num_workers(self) -> Any:
        return getattr(self.encoders[0], "num_workers", None)

    @num_workers.setter
    def num_workers(self, value: int) -> None:  # image-decoding workers apply to every image member
        for e in self.encoders:
            e.num_workers = value

    def encode(
        self,
        items: Sequence[Any],
        *,
        batch_size: int = 64,
        show_progress: bool | None = None,
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        parts = [e.encode(items, batch_size=batch_size, show_progress=show_progress, ids=ids) for e in self.encoders]
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)
