"""FAISS indexes on relative vectors: build from a factory string, add, write, read and search."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.progress import progress

logger = logging.getLogger(__name__)

ADD_BATCH = 65_536
MAPPED = "relspace_mapped_from"  # attribute read_faiss sets on a memory-mapped (read-only) index
# How far an inner product of L2-normalised vectors may stray outside [-1, 1] before it is corruption, by how
# the index stores its codes: exact float32 codes (Flat, HNSW, IVF-Flat) only by rounding; 8-bit scalar codes
# and product quantization by their reconstruction error, which on the small index's 80-dim relative vectors
# stays under 0.1 (SQ8 ~0.01, PQ with 8-bit codes ~0.1): 0.5 never flags a sound index, and a flipped exponent
# (1e38) or a NaN is caught by either.
EXACT_TOLERANCE = 1e-3
LOSSY_TOLERANCE = 0.5


class IndexCorruptError(RuntimeError):
    """An index file whose contents are impossible (a score or vector norm no sound index gives): damaged data,
    never a result. A RuntimeError, not a ValueError: it is the server's fault, not the query's."""


def build_faiss(
    xb: np.ndarray | Sequence[np.ndarray],
    factory: str = "Flat",
    train_size: int = 100_000,
    seed: int = 0,
    add: Callable[..., None] | None = None,
) -> Any:
    """Create an inner-product FAISS index from a factory string, train it if needed, and add the vectors.

    ``xb`` is one matrix or a sequence of blocks (e.g. memory-mapped shards) added in order, so that a
    million-row index never needs the rows in one array: memory is the index plus one block. Inner
    product on L2-normalised relative vectors is cosine similarity, so every factory uses
    ``METRIC_INNER_PRODUCT``. ``add(index, blocks, desc=...)`` fills the trained index (default
    :func:`add_blocks`, here; an engine may add the blocks on its workers and merge).
    """
    blocks = [xb] if isinstance(xb, np.ndarray) else list(xb)
    dim = blocks[0].shape[1] if blocks else 0
    index = empty_index(factory, dim)
    if not index.is_trained:
        sample = sample_rows(blocks, train_size, seed)
        if len(sample) == 0:
            raise ValueError(f"FAISS index {factory!r} needs training vectors, but there are none")
        logger.info("training FAISS %s on %d vectors", factory, len(sample))
        index.train(sample)
    (add or add_blocks)(index, blocks, desc=f"FAISS add ({factory})")
    return index


def empty_index(factory: str, dim: int) -> Any:
    """An untrained, empty inner-product index; a bad factory string is refused in one line that names it."""
    import faiss

    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ValueError(f"invalid FAISS factory string {factory!r}: {str(e).splitlines()[-1]}") from None


def sample_rows(blocks: Sequence[np.ndarray], size: int, seed: int) -> np.ndarray:
    """At most ``size`` rows drawn uniformly (seeded) across ``blocks``, read without stacking them all."""
    sizes = np.array([len(b) for b in blocks], dtype=np.int64)
    total = int(sizes.sum())
    rng = np.random.default_rng(seed)
    rows = np.arange(total) if total <= size else np.sort(rng.choice(total, size, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    parts = [np.asarray(b[rows[(rows >= s) & (rows < e)] - s], dtype=np.float32)
             for b, s, e in zip(blocks, starts[:-1], starts[1:])]
    return np.ascontiguousarray(np.concatenate(parts)) if parts else np.zeros((0, 0), np.float32)


def add_blocks(index: Any, blocks: Sequence[np.ndarray], desc: str = "FAISS add") -> None:
    """Append blocks of vectors in order (FAISS ids continue from ``index.ntotal``), ADD_BATCH rows at a time."""
    if getattr(index, MAPPED, None):  # FAISS would abort the process, not raise, on a memory-mapped index
        raise ValueError(f"the index was memory-mapped read-only from {getattr(index, MAPPED)}; "
                         "read it with read_faiss(path, mmap=False) to add to it")
    with progress(total=sum(len(b) for b in blocks), desc=desc) as bar:
        for block in blocks:
            for start in range(0, len(block), ADD_BATCH):
                part = np.ascontiguousarray(block[start : start + ADD_BATCH], dtype=np.float32)
                index.add(part)
                bar.update(len(part))


def write_faiss(index: Any, path: str | Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def read_faiss(path: str | Path, *, mmap: bool = True) -> Any:
    """Read a FAISS index file, refusing a missing or damaged one in one line that names it.

    With ``mmap`` the vectors stay in the file's pages (``IO_FLAG_MMAP_IFC``: flat, SQ, PQ and HNSW codes
    and IVF lists alike in faiss 1.15), so loading takes milliseconds instead of a full read, and server
    workers on one machine share the page cache instead of each holding a copy. Such an index is
    read-only: FAISS aborts the process on an add or remove, so :func:`add_blocks` refuses it, and an
    index that is to change must be read with ``mmap=False``. A file the mapping reader refuses is read
    normally.
    """
    import faiss

    if not Path(path).is_file():
        raise FileNotFoundError(f"FAISS index file missing: {path}; the index is incomplete: rebuild it")
    if mmap:
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
            index.__dict__[MAPPED] = str(path)  # faiss >= 1.13 refuses unknown attributes through setattr
            return index
        except RuntimeError as e:  # a damaged file fails the normal read below too, with our message
            logger.debug("memory-mapping %s failed (%s); reading it", path, str(e).splitlines()[-1])
    try:
        return faiss.read_index(str(path))
    except RuntimeError as e:  # FAISS speaks C++ (file, line, assertion); the reader needs the file and a remedy
        damaged = f"FAISS index file {path} is damaged (truncated or not a FAISS index); rebuild the index"
        raise ValueError(damaged) from e


def layers(index: Any) -> list[Any]:
    """The index and the indexes it wraps (pre-transform, refine base, id map), outermost first, downcast."""
    import faiss

    out = []
    while index is not None:
        index = faiss.downcast_index(index)
        out.append(index)
        if isinstance(index, faiss.IndexIVF | faiss.IndexHNSW):  # their quantizer / storage is not a layer
            break
        index = getattr(index, "base_index", None) or getattr(index, "index", None)
    return out


def search_params(index: Any) -> dict[str, int]:
    """The tunable search parameters of an index and their current values (see :func:`apply_search_params`)."""
    import faiss

    params = {}
    for layer in layers(index):
        if isinstance(layer, faiss.IndexRefine):
            params["k_factor"] = int(layer.k_factor)
        elif isinstance(layer, faiss.IndexIVF):
            params["nprobe"] = int(layer.nprobe)
        elif isinstance(layer, faiss.IndexHNSW):
            params["efSearch"] = int(layer.hnsw.efSearch)
    return params


def apply_search_params(index: Any, params: dict[str, Any]) -> Any:
    """Set tuned search parameters (``nprobe``, ``efSearch``, ``k_factor``) on the layer that owns each.

    Used by the automatic index choice and again at load time with the manifest's recorded values, since a
    FAISS file keeps nprobe and efSearch but a reader should not depend on that. A parameter the index has
    no layer for is refused by name. Returns the index.
    """
    import faiss

    kinds = {"k_factor": faiss.IndexRefine, "nprobe": faiss.IndexIVF, "efSearch": faiss.IndexHNSW}
    for name, value in params.items():
        if name not in kinds:
            raise ValueError(f"unknown FAISS search parameter {name!r}; known: {', '.join(kinds)}")
        layer = next((la for la in layers(index) if isinstance(la, kinds[name])), None)
        if layer is None:
            raise ValueError(f"search parameter {name!r} does not apply to a {type(index).__name__} index")
        if name == "efSearch":
            layer.hnsw.efSearch = int(value)
        elif name == "k_factor":
            layer.k_factor = float(value)
        else:
            layer.nprobe = int(value)
    return index


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


def score_tolerance(index: Any) -> float:
    """How far a score or a norm may exceed 1 on this index (see EXACT_TOLERANCE), from the codes it stores."""
    import faiss

    lossy = (faiss.IndexScalarQuantizer, faiss.IndexIVFScalarQuantizer, faiss.IndexPQ, faiss.IndexIVFPQ,
             faiss.IndexHNSWSQ, faiss.IndexHNSWPQ, faiss.IndexLSH, faiss.IndexAdditiveQuantizer,
             faiss.IndexIVFAdditiveQuantizer)
    top = layers(index)
    if isinstance(top[0], faiss.IndexRefine):  # the final scores come from the refinement's index
        top = layers(top[0].refine_index)
    return LOSSY_TOLERANCE if any(isinstance(la, lossy) for la in top) else EXACT_TOLERANCE


def check_scores(index: Any, xq: np.ndarray, scores: np.ndarray, ids: np.ndarray, path: str | Path) -> None:
    """Refuse scores no sound index gives: stored vectors have unit (or zero) norm, so a query ``q`` scores at
    most ``|q| (1 + tolerance)`` (relative queries are unit vectors too; a caller's own may not be).

    Raises:
        IndexCorruptError: naming ``path`` (the index file) and the FAISS id of the first impossible score.
    """
    found = ids >= 0  # -1 pads rows that fewer than k vectors passed
    bound = np.linalg.norm(np.asarray(xq, dtype=np.float64), axis=1, keepdims=True) * (1.0 + score_tolerance(index))
    bad = found & ~(np.abs(scores) <= bound + 1e-6)  # NaN fails the comparison too
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise IndexCorruptError(f"{path} is damaged: vector #{ids[row, col]} scored {scores[row, col]:.6g}, "
                                f"impossible for unit vectors; run `relspace verify` and rebuild the index")


def _filter_params(index: Any, selector: Any) -> Any:
    """Search parameters that filter by ``selector`` and carry the index's tuned search parameters.

    Each layer needs its own kind (an IVF index refuses plain ``SearchParameters``), and a parameter object
    overrides the index's own settings: without restating nprobe, efSearch and k_factor, a filtered search
    would quietly run with the defaults.
    """
    import faiss

    keep: list[Any] = [selector]  # SWIG holds raw pointers: the Python objects must outlive the search

    def build(layer: Any) -> Any:
        if isinstance(layer, faiss.IndexRefine):
            p = faiss.IndexRefineSearchParameters(k_factor=layer.k_factor, base_index_params=build(inner.pop(0)))
        elif isinstance(layer, faiss.IndexPreTransform):
            p = faiss.SearchParametersPreTransform(index_params=build(inner.pop(0)))
        elif isinstance(layer, faiss.IndexIVF):
            p = faiss.SearchParametersIVF(sel=selector, nprobe=layer.nprobe)
        elif isinstance(layer, faiss.IndexHNSW):
            p = faiss.SearchParametersHNSW(sel=selector, efSearch=layer.hnsw.efSearch)
        else:
            p = faiss.SearchParameters(sel=selector)
        keep.append(p)
        return p

    inner = layers(index)
    params = build(inner.pop(0))
    params.referenced_objects = keep
    return params
