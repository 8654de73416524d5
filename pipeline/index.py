"""FAISS indexes on relative vectors: build from a factory string, add, write, read and search."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .progress import progress

logger = logging.getLogger(__name__)

ADD_BATCH = 65_536


def build_faiss(xb: np.ndarray, factory: str = "Flat", train_size: int = 100_000, seed: int = 0) -> Any:
    """Create an inner-product FAISS index from a factory string, train it if needed, and add ``xb``.

    Inner product on L2-normalised relative vectors is cosine similarity, so every factory uses
    ``METRIC_INNER_PRODUCT``.
    """
    import faiss

    xb = np.ascontiguousarray(xb, dtype=np.float32)
    try:
        index = faiss.index_factory(xb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ValueError(f"invalid FAISS factory string {factory!r}: {str(e).splitlines()[-1]}") from None
    if not index.is_trained:
        if len(xb) == 0:
            raise ValueError(f"FAISS index {factory!r} needs training vectors, but there are none")
        rng = np.random.default_rng(seed)
        sample = xb if len(xb) <= train_size else xb[rng.choice(len(xb), train_size, replace=False)]
        logger.info("training FAISS %s on %d vectors", factory, len(sample))
        index.train(sample)
    with progress(total=len(xb), desc=f"FAISS add ({factory})") as bar:
        for start in range(0, len(xb), ADD_BATCH):
            index.add(xb[start : start + ADD_BATCH])
            bar.update(min(ADD_BATCH, len(xb) - start))
    return index


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
    index: Any, xq: np.ndarray, k: int, *, id_range: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Search ``k`` neighbours, clipping k to the index size (FAISS pads with -1 otherwise).

    ``id_range`` keeps only rows ``start <= id < end`` (e.g. one language's captions); rows padded with -1
    come back where fewer than k pass.
    """
    k = max(1, min(int(k), index.ntotal))
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    if id_range is None:
        return index.search(xq, k)
    return index.search(xq, k, params=_range_params(index, *id_range))


def _range_params(index: Any, start: int, end: int) -> Any:
    """Search parameters that filter to an id range, of the kind the index needs.

    An IVF index refuses plain ``SearchParameters`` (it needs ``SearchParametersIVF``), and those must carry
    its ``nprobe``, or the filtered search would quietly probe one list.
    """
    import faiss

    selector = faiss.IDSelectorRange(start, end)
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:  # not an IVF index (Flat, HNSW, ...): plain parameters do
        return faiss.SearchParameters(sel=selector)
    return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe)
