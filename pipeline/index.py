"""FAISS indexes on relative vectors: build from a factory string, add, write, read and search."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .progress import progress

logger = logging.getLogger(__name__)

ADD_BATCH = 65_536


def build_faiss(
    xb: np.ndarray | Sequence[np.ndarray], factory: str = "Flat", train_size: int = 100_000, seed: int = 0
) -> Any:
    """Create an inner-product FAISS index from a factory string, train it if needed, and add the vectors.

    ``xb`` is one matrix or a sequence of blocks (e.g. memory-mapped shards) added in order, so that a
    million-row index never needs the rows in one array: memory is the index plus one block. Inner
    product on L2-normalised relative vectors is cosine similarity, so every factory uses
    ``METRIC_INNER_PRODUCT``.
    """
    blocks = [xb] if isinstance(xb, np.ndarray) else list(xb)
    dim = blocks[0].shape[1] if blocks else 0
    index = empty_index(factory, dim)
    if not index.is_trained:
        index.train(train_sample(blocks, train_size, seed, factory))
    add_blocks(index, blocks, desc=f"FAISS add ({factory})")
    return index


def empty_index(factory: str, dim: int) -> Any:
    """An untrained, empty inner-product index; a bad factory string is refused in one line that names it."""
    import faiss

    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ValueError(f"invalid FAISS factory string {factory!r}: {str(e).splitlines()[-1]}") from None


def train_sample(blocks: Sequence[np.ndarray], train_size: int, seed: int, factory: str = "") -> np.ndarray:
    """At most ``train_size`` rows drawn uniformly (seeded) across ``blocks``, read without stacking them all."""
    sizes = np.array([len(b) for b in blocks], dtype=np.int64)
    total = int(sizes.sum())
    if total == 0:
        raise ValueError(f"FAISS index {factory!r} needs training vectors, but there are none")
    rows = np.arange(total) if total <= train_size else np.sort(
        np.random.default_rng(seed).choice(total, train_size, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    parts = [np.asarray(b[rows[(rows >= s) & (rows < e)] - s], dtype=np.float32)
             for b, s, e in zip(blocks, starts[:-1], starts[1:])]
    logger.info("training FAISS %s on %d vectors", factory, len(rows))
    return np.ascontiguousarray(np.concatenate(parts))


def add_blocks(index: Any, blocks: Sequence[np.ndarray], desc: str = "FAISS add") -> None:
    """Append blocks of vectors in order (FAISS ids continue from ``index.ntotal``), ADD_BATCH rows at a time."""
    with progress(total=sum(len(b) for b in blocks), desc=desc) as bar:
        for block in blocks:
            for start in range(0, len(block), ADD_BATCH):
                part = np.ascontiguousarray(block[start : start + ADD_BATCH], dtype=np.float32)
                index.add(part)
                bar.update(len(part))


def write_faiss(index: Any, path: str | Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def read_faiss(path: str | Path) -> Any:
    """Read a FAISS index file, refusing a missing or damaged one in one line that names it."""
    import faiss

    if not Path(path).is_file():
        raise FileNotFoundError(f"FAISS index file missing: {path}; the index is incomplete: rebuild it")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as e:  # FAISS speaks C++ (file, line, assertion); the reader needs the file and a remedy
        damaged = f"FAISS index file {path} is damaged (truncated or not a FAISS index); rebuild the index"
        raise ValueError(damaged) from e


def search_faiss(
    index: Any, xq: np.ndarray, k: int, *, keep: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Search ``k`` neighbours, clipping k to the index size (FAISS pads with -1 otherwise).

    ``keep`` is a boolean mask over the index's ids: only rows where it is true are returned (e.g. one
    language's captions); rows padded with -1 come back where fewer than k pass.
    """
    k = max(1, min(int(k), index.ntotal))
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    if keep is None:
        return index.search(xq, k)
    import faiss

    bits = np.packbits(np.asarray(keep, dtype=bool), bitorder="little")
    selector = faiss.IDSelectorBitmap(len(keep), faiss.swig_ptr(bits))  # reads ``bits``, alive until we return
    return index.search(xq, k, params=_filter_params(index, selector))


def _filter_params(index: Any, selector: Any) -> Any:
    """Search parameters that filter by ``selector``, of the kind the index needs.

    An IVF index refuses plain ``SearchParameters`` (it needs ``SearchParametersIVF``), and those must carry
    its ``nprobe``, or the filtered search would quietly probe one list.
    """
    import faiss

    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:  # not an IVF index (Flat, HNSW, ...): plain parameters do
        return faiss.SearchParameters(sel=selector)
    return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
