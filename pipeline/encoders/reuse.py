"""Vectors a build has already computed, reused rather than encoded again.

The anchors of a build are items of its data: the anchor phase embeds their images and captions (and, for the
geometry-aware selectors, every candidate of the pool), and the shard phase used to embed the same items again
as items. A :class:`ReusingEncoder` wraps each of the build's encoders: while its :class:`VectorTable` records
(the anchor phase), every vector it encodes is kept; afterwards (the shards) it only looks up, and encodes the
rest. Memory stays bounded: the table holds the anchor phase's vectors and nothing the shards compute.

Items are keyed by content (a caption's text, an image's bytes or path), never by id, so an anchor file whose
ids collide with the data's cannot lend its vectors to other content.

Only an encoder that gives an item the same bits in any batch (``Encoder.batch_invariant``) is reused, so that a
build stores exactly the vectors it stored before. The ONNX image encoder is (checked); MiniLM, which pads each
batch to its longest caption, moves about a fifth of the vectors by up to 1.6e-7 with the batch, so captions are
embedded again as before. On a quiet machine an image costs 10 to 35 captions' time (README "Speed"); at load
6 to 8 on 2 cores only about 1.6 (``experiments/demo_phases.py``), and captions are then most of a build.
``tests/encoders/test_reuse.py`` checks the premise, ``tests/indexing/test_embed_once.py`` compares the shards
bit for bit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Encoder

logger = logging.getLogger(__name__)


def content_key(item: Any) -> bytes | None:
    """What identifies an item's content for its encoder: the text, a digest of the bytes, or the path.

    None when the item has no such key (it is then always encoded).
    """
    if isinstance(item, str):
        return b"s" + item.encode("utf-8", "surrogatepass")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return b"b" + hashlib.blake2b(bytes(item), digest_size=20).digest()
    if isinstance(item, dict):  # 🤗 datasets' image dict: its bytes when present, else its path
        data, path = item.get("bytes"), item.get("path")
        return content_key(data) if data is not None else (content_key(path) if isinstance(path, str) else None)
    if hasattr(item, "tobytes") and hasattr(item, "mode") and hasattr(item, "size"):  # a PIL image
        h = hashlib.blake2b(f"{item.mode}{item.size}".encode(), digest_size=20)
        h.update(item.tobytes())
        return b"p" + h.digest()
    return None


class VectorTable:
    """Absolute vectors by encoder (spec and version) and item content; records until :meth:`freeze`."""

    def __init__(self) -> None:
        self._vectors: dict[tuple[str, str], dict[bytes, np.ndarray]] = {}
        self.recording = True
        self.reused = 0  # lookups answered from the table, for the build's log and the tests

    def freeze(self) -> None:
        """Stop recording: later misses are encoded and not kept, so memory does not grow with the data."""
        self.recording = False

    def __len__(self) -> int:
        return sum(len(v) for v in self._vectors.values())

    def lookup(self, encoder: Encoder, keys: Sequence[bytes | None]) -> list[np.ndarray | None]:
        table = self._vectors.get((encoder.spec, encoder.version), {})
        return [table.get(k) if k is not None else None for k in keys]

    def record(self, encoder: Encoder, keys: Sequence[bytes | None], vectors: np.ndarray) -> None:
        if not self.recording:
            return
        table = self._vectors.setdefault((encoder.spec, encoder.version), {})
        for k, v in zip(keys, vectors):
            if k is not None:
                table.setdefault(k, v.copy())


class ReusingEncoder(Encoder):
    """``inner``, except that items whose vectors ``table`` holds are not encoded again.

    An ensemble is wrapped member by member (each member's vectors are its own, as the embedding cache keeps
    them), so that ``embed_dataset``, which embeds an ensemble's members apart, reuses them too.
    """

    def __init__(self, inner: Encoder, table: VectorTable):
        self.inner, self.table = inner, table
        self.modality, self.spec, self._dim = inner.modality, inner.spec, inner.dim
        many = inner.members
        self._members = [ReusingEncoder(m, table) for m in many] if len(many) > 1 else [self]

    @property
    def batch_invariant(self) -> bool:  # type: ignore[override]
        return all(m.inner.batch_invariant for m in self._members) if self._members[0] is not self \
            else self.inner.batch_invariant

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def members(self) -> list[Encoder]:
        return list(self._members)

    @property
    def blocks(self) -> tuple[tuple[int, float], ...]:
        return self.inner.blocks

    def encode(
        self,
        items: Sequence[Any],
        *,
        batch_size: int = 64,
        show_progress: bool | None = None,
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        if len(self._members) > 1:
            parts = [m.encode(items, batch_size=batch_size, show_progress=show_progress, ids=ids)
                     for m in self._members]
            return np.concatenate(parts, axis=1).astype(np.float32, copy=False)
        if not self.inner.batch_invariant:
            return self.inner.encode(items, batch_size=batch_size, show_progress=show_progress, ids=ids)
        keys = [content_key(item) for item in items]
        known = self.table.lookup(self.inner, keys)
        missing = [i for i, v in enumerate(known) if v is None]
        out = np.empty((len(items), self.dim), dtype=np.float32)
        if missing:  # in their order, in batches of batch_size, as the inner encoder would see them alone
            vecs = self.inner.encode([items[i] for i in missing], batch_size=batch_size, show_progress=show_progress,
                                     ids=[ids[i] for i in missing] if ids is not None else None)
            out[missing] = vecs
            self.table.record(self.inner, [keys[i] for i in missing], vecs)
        hits = len(items) - len(missing)
        if hits:
            out[[i for i, v in enumerate(known) if v is not None]] = np.stack([v for v in known if v is not None])
            self.table.reused += hits
            logger.info("reused %d of %d %s vectors (%s) the build had already computed", hits, len(items),
                        self.modality, self.spec)
        return out
