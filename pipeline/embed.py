"""Absolute embeddings of a dataset's images or captions, cached on disk as .npy (never pickle)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .data import captions
from .encoders import Encoder
from .hashing import hash_arrays

logger = logging.getLogger(__name__)


def embed_dataset(
    ds: Any,
    encoder: Encoder,
    *,
    lang: str | None = None,
    batch_size: int = 64,
    cache: str | Path | None = None,
) -> np.ndarray:
    """Embed every item of ``ds`` with ``encoder`` (images, or captions in ``lang``), cached by content.

    The cache key covers the encoder's spec and version, the dataset fingerprint and the column, so a
    changed model or dataset never reuses stale vectors.
    """
    if encoder.modality == "text" and lang is None:
        raise ValueError("embedding captions needs their language")
    what = "image" if encoder.modality == "image" else f"caption:{lang}"
    path = None
    fingerprint = getattr(ds, "_fingerprint", None)  # 🤗 datasets' content fingerprint
    if cache is not None and fingerprint:
        key = hash_arrays(encoder.spec, encoder.version, fingerprint, len(ds), what)
        path = Path(cache) / f"{key[:32]}.npy"
        if path.is_file():
            vecs = np.load(path, allow_pickle=False)
            if vecs.shape == (len(ds), encoder.dim):
                logger.info("reusing cached %s embeddings (%s) from %s", what, encoder.spec, path)
                return vecs
    ids = list(ds["id"])
    items = list(ds["image"]) if encoder.modality == "image" else captions(ds, lang)
    vecs = encoder.encode(items, batch_size=batch_size, ids=ids)
    if not np.isfinite(vecs).all():
        bad = ids[int(np.flatnonzero(~np.isfinite(vecs).all(axis=1))[0])]
        raise ValueError(f"item {bad!r}: the {encoder.modality} encoder produced NaN or inf")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vecs, allow_pickle=False)
        tmp.replace(path)
    return vecs
