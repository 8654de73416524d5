"""Absolute embeddings of a dataset's images or captions, cached on disk as .npy (never pickle)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.hashing import hash_arrays
from ..core.io import atomic_write
from ..data import caption_rows, captions
from ..data.fingerprint import image_key, text_key
from . import Encoder

logger = logging.getLogger(__name__)

Pooling = Literal["mean", "first"]


def embed_dataset(
    ds: Any,
    encoder: Encoder,
    *,
    lang: str | None = None,
    batch_size: int = 64,
    cache: str | Path | None = None,
    show_progress: bool | None = None,
) -> np.ndarray:
    """Embed every image of ``ds``, or every caption in ``lang``, with ``encoder``; cached by content.

    Images give one row per item. Captions give one row per caption, in the order of
    ``caption_rows(captions(ds, lang))``: items with several captions have several rows, items without a
    caption in ``lang`` none. The cache key is the encoder's spec and version and the content of the one
    column embedded (:mod:`pipeline.data.fingerprint`): a changed model or image never reuses stale vectors,
    and a changed caption or label column never throws away image vectors.
    """
    if encoder.modality == "text" and lang is None:
        raise ValueError("embedding captions needs their language")
    ids = list(ds["id"])
    if encoder.modality == "image":
        items = list(ds.with_format(None)["image"])  # raw values: bytes, paths or undecoded Image dicts
        names, content = ids, image_key(items)
    else:
        rows, items = caption_rows(captions(ds, lang))
        names, content = [ids[i] for i in rows], text_key(items)
    return embed_items(items, encoder, content, names=names, batch_size=batch_size, cache=cache,
                       show_progress=show_progress)


def embed_items(
    items: Sequence[Any],
    encoder: Encoder,
    content: str,
    *,
    names: Sequence[str],
    batch_size: int = 64,
    cache: str | Path | None = None,
    show_progress: bool | None = None,
) -> np.ndarray:
    """``encoder.encode(items)``, cached under ``cache`` by the encoder's identity and ``content``, the
    items' content key; an ensemble's members are cached one by one, so members can be regrouped freely."""
    if len(encoder.members) > 1:
        return np.concatenate([embed_items(items, m, content, names=names, batch_size=batch_size, cache=cache,
                                           show_progress=show_progress) for m in encoder.members], axis=1)
    path = None
    if cache is not None:
        key = hash_arrays(encoder.spec, encoder.version, encoder.modality, content, len(items))
        path = Path(cache) / f"{key[:32]}.npy"
        if path.is_file():
            vecs = np.load(path, allow_pickle=False)
            if vecs.shape == (len(items), encoder.dim):
                logger.info("reusing cached %s embeddings (%s) from %s", encoder.modality, encoder.spec, path)
                return vecs
    vecs = encoder.encode(list(items), batch_size=batch_size, ids=list(names), show_progress=show_progress)
    if not np.isfinite(vecs).all():
        bad = names[int(np.flatnonzero(~np.isfinite(vecs).all(axis=1))[0])]
        raise ValueError(f"item {bad!r}: the {encoder.modality} encoder produced NaN or inf")
    if path is not None:
        with atomic_write(path) as tmp:  # a unique temporary: two processes sharing a cache never mix
            np.save(tmp, vecs, allow_pickle=False)
    return vecs


def pool_captions(
    vecs: np.ndarray, rows: np.ndarray, items: Sequence[int], pooling: Pooling = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """One vector per item from its caption rows: their mean in the encoder space, or the first.

    Args:
        vecs: (n_rows, d) caption embeddings.
        rows: (n_rows,) the item of each row.
        items: the items wanted, in order.
        pooling: "mean" (several captions of an anchor describe one image; their mean is its text side)
            or "first".

    Returns:
        (k, d) vectors for the k wanted items that have a caption, and their positions in ``items``.
    """
    items = np.asarray(items, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    lookup = np.full(max(int(rows.max(initial=-1)), int(items.max(initial=-1))) + 1, -1, dtype=np.int64)
    lookup[items] = np.arange(len(items))
    pos = lookup[rows]
    take = np.flatnonzero(pos >= 0)
    if pooling == "first":  # rows are in item order, so an item's first row comes first
        take = take[np.unique(pos[take], return_index=True)[1]]
    sums = np.zeros((len(items), vecs.shape[1]), dtype=np.float64)
    np.add.at(sums, pos[take], vecs[take])
    counts = np.bincount(pos[take], minlength=len(items))
    present = np.flatnonzero(counts)
    return (sums[present] / counts[present, None]).astype(np.float32), present
