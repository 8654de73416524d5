"""``index.factory: auto``: the most exact FAISS index that fits the memory and latency budgets at a recall target.

Candidates (see :mod:`pipeline.ann.candidates`) are tried most exact first; one over the memory budget is
skipped from its formula before it is built, the others are built, their search parameters raised until
recall@k against exact search reaches the target on cross-modal queries, then timed one query at a time on
one thread. The first that passes wins, so a build pays for few indexes. The database arrives as blocks
(memory-mapped shards), never stacked: memory stays about one index + one block + the training sample.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import IndexConfig
from ..core.units import parse_size
from .candidates import Candidate, ordered
from .faiss_index import ADD_BATCH, apply_search_params, build_faiss, search_params, write_faiss

logger = logging.getLogger(__name__)

LATENCY_QUERIES = 200  # single queries timed per candidate (fewer when LATENCY_SECONDS runs out)
LATENCY_SECONDS = 10.0  # time cap of one latency measurement; at least 20 queries are timed
GRIDS = {  # values tried in order for each search parameter; recall rises with each
    "nprobe": [2**i for i in range(16)],
    "efSearch": [16, 32, 64, 128, 256, 512, 1024],
    "k_factor": [2, 4, 8, 16],
}
PLATEAU = 0.002  # recall gained over two steps below this: the codes, not the search, limit recall


class BudgetError(ValueError):
    """No candidate index meets the budgets; the message names them and why each candidate failed."""


@dataclass
class IndexBudget:
    """What the automatic choice must meet, for one modality's index."""

    max_memory: int | None  # bytes of the index, build peak included (index + block + training sample)
    max_query_ms: float | None  # median single-thread query time in ms (the p99 is recorded beside it)
    recall: float = 0.95  # recall@k against exact (Flat) search on the cross-modal queries
    k: int = 10  # the k of recall@k

    @classmethod
    def from_config(cls, cfg: IndexConfig) -> IndexBudget:
        memory = None if cfg.max_memory is None else parse_size(cfg.max_memory, "index.max_memory")
        return cls(max_memory=memory, max_query_ms=cfg.max_query_ms, recall=cfg.recall)

    def describe(self) -> str:
        memory = "unbounded" if self.max_memory is None else _size(self.max_memory)
        latency = "unbounded" if self.max_query_ms is None else f"{self.max_query_ms:g} ms"
        return f"index.max_memory={memory}, index.max_query_ms={latency}, recall@{self.k} >= {self.recall:g}"


def exact_knn(blocks: Sequence[np.ndarray], xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k over the concatenated blocks, ADD_BATCH rows at a time, merged in a heap."""
    import faiss

    xq = np.ascontiguousarray(xq, dtype=np.float32)
    heap = faiss.ResultHeap(len(xq), k, keep_max=True)
    start = 0
    for block in blocks:
        for s in range(0, len(block), ADD_BATCH):
            part = np.ascontiguousarray(block[s : s + ADD_BATCH], dtype=np.float32)
            D, I = faiss.knn(xq, part, min(k, len(part)), metric=faiss.METRIC_INNER_PRODUCT)
            heap.add_result(D, I + start + s)
        start += len(block)
    heap.finalize()
    return heap.D, heap.I


def recall_at_k(blocks: Sequence[np.ndarray], xq: np.ndarray, I: np.ndarray, D_gt: np.ndarray) -> float:
    """Share of returned ids whose exact score reaches the exact k-th score, so that ties count as hits."""
    ids, rows = I.ravel(), np.repeat(np.arange(len(xq)), I.shape[1])
    exact = np.full(ids.shape, -np.inf, dtype=np.float32)
    start = 0
    for block in blocks:
        sel = np.flatnonzero((ids >= start) & (ids < start + len(block)))
        if len(sel):
            vecs = np.asarray(block[ids[sel] - start], dtype=np.float32)
            exact[sel] = np.einsum("ij,ij->i", vecs, xq[rows[sel]])
        start += len(block)
    return float((exact.reshape(I.shape) >= D_gt[:, -1:] - 1e-5).mean())


def choose_index(
    blocks: Sequence[np.ndarray], queries: np.ndarray, budget: IndexBudget, *, train_size: int = 100_000, seed: int = 0,
    add: Callable[..., None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build the most exact index that meets ``budget``, with its tuned search parameters applied.

    Args:
        blocks: float32 (n_i, m) arrays in id order (e.g. ``np.load(..., mmap_mode="r")`` shards).
        queries: cross-modal query vectors (the other modality's), not rows of ``blocks``.
        budget: memory, latency and recall to meet.
        train_size: at most this many rows train an index that needs training.
        seed: seed of the training sample.
        add: what fills each trained candidate (see :func:`~pipeline.ann.faiss_index.build_faiss`).

    Returns:
        The populated index and the manifest record: key (factory string), name, params, bytes, p50_ms,
        p99_ms, recall_at_10 (recall@k, k recorded), and ``candidates``, one row per candidate tried.

    Raises:
        BudgetError: no candidate meets the budget; the message names it and each candidate's reason.
    """
    rows, index = _walk(blocks, queries, budget, train_size, seed, stop_first=True, add=add)
    if index is None:
        reasons = "; ".join(f"{r['name']}: {r['reason']}" for r in rows)
        raise BudgetError(f"no FAISS index meets {budget.describe()} on {_n(blocks):,} vectors ({reasons}); "
                          "raise a budget or lower index.recall")
    chosen = rows[-1]
    record = {**{k: v for k, v in chosen.items() if k != "reason"}, "candidates": rows, "budget": asdict(budget),
              "queries": len(queries), "n": _n(blocks)}
    logger.info("auto index: %s%s, %s, p50 %.2f ms, recall@%d %.3f", chosen["key"], describe_params(chosen["params"]),
                _size(chosen["bytes"]), chosen["p50_ms"], budget.k, chosen["recall_at_10"])
    return index, record


def evaluate_candidates(
    blocks: Sequence[np.ndarray], queries: np.ndarray, budget: IndexBudget, *, train_size: int = 100_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Every candidate's row (as in ``choose_index``'s record), without stopping at the first that passes."""
    return _walk(blocks, queries, budget, train_size, seed, stop_first=False)[0]


def _walk(
    blocks: Sequence[np.ndarray], xq: np.ndarray, budget: IndexBudget, train_size: int, seed: int, stop_first: bool,
    add: Callable[..., None] | None = None,
) -> tuple[list[dict[str, Any]], Any]:
    blocks = list(blocks)
    n = _n(blocks)
    ntrain = min(n, train_size)
    xq = np.ascontiguousarray(xq, dtype=np.float32)
    k = min(budget.k, n)
    D_gt, _ = exact_knn(blocks, xq, k)
    rows = []
    for cand in ordered():
        row = _estimate(cand, blocks, xq, budget, ntrain)
        rows.append(row)
        if row.get("reason"):
            logger.info("auto index: %s skipped: %s", cand.name, row["reason"])
            continue
        t0 = time.perf_counter()
        index = build_faiss(blocks, row["key"], train_size, seed, add)
        row["build_s"] = round(time.perf_counter() - t0, 3)
        row["bytes"] = _serialized_bytes(index)
        if budget.max_memory is not None and row["bytes"] > budget.max_memory:
            row["reason"] = f"over memory budget: {_size(row['bytes'])} written > {_size(budget.max_memory)}"
        else:
            _tune(index, blocks, xq, D_gt, budget, row)
        if not row.get("reason"):
            _latency(index, xq, k, row)
            if budget.max_query_ms is not None and row["p50_ms"] > budget.max_query_ms:
                row["reason"] = f"p50 {row['p50_ms']:.2f} ms > max_query_ms {budget.max_query_ms:g}"
        logger.info("auto index: %s", row)
        if not row.get("reason") and stop_first:
            return rows, index
        del index
        gc.collect()
    return rows, None


def _estimate(cand: Candidate, blocks: list[np.ndarray], xq: np.ndarray, budget: IndexBudget, ntrain: int) -> dict:
    """The candidate's row before building: factory string, estimated bytes and build peak, or why it is skipped."""
    n, dim = _n(blocks), blocks[0].shape[1]
    key = cand.factory(n, dim, ntrain)
    estimate = cand.nbytes(n, dim, ntrain)
    block = max(min(len(b), ADD_BATCH) for b in blocks) * dim * 4  # add_blocks converts ADD_BATCH rows at a time
    peak = estimate + block + (ntrain * dim * 4 if cand.trained else 0) + xq.nbytes
    row: dict[str, Any] = {"name": cand.name, "key": key, "params": {}, "estimated_bytes": estimate,
                           "peak_bytes": peak, "bytes": None, "p50_ms": None, "p99_ms": None, "recall_at_10": None}
    if n < cand.min_n:
        row["reason"] = f"n={n:,} < {cand.min_n:,}: exact search is fast at this size"
    elif budget.max_memory is not None and peak > budget.max_memory:
        row["reason"] = (f"over memory budget: build peak ~{_size(peak)} (index ~{_size(estimate)}) > "
                         f"{_size(budget.max_memory)}")
    return row


def _tune(index: Any, blocks: list[np.ndarray], xq: np.ndarray, D_gt: np.ndarray, budget: IndexBudget,
          row: dict) -> None:
    """Raise the search parameters, cheapest first, until recall@k reaches the target; set them on ``index``."""
    knobs = search_params(index)
    main = next((p for p in ("nprobe", "efSearch") if p in knobs), None)
    lists = ivf.nlist if (ivf := _ivf(index)) is not None else None
    grid = [v for v in GRIDS[main] if lists is None or v <= lists] if main else [None]
    best = (-1.0, {})
    for kf in GRIDS["k_factor"] if "k_factor" in knobs else [None]:
        history: list[float] = []
        for value in grid:
            params = {name: v for name, v in ((main, value), ("k_factor", kf)) if v is not None}
            apply_search_params(index, params)
            _, I = index.search(xq, D_gt.shape[1])
            history.append(recall_at_k(blocks, xq, I, D_gt))
            best = max(best, (history[-1], params), key=lambda b: b[0])
            if history[-1] >= budget.recall:
                row.update(params=params, recall_at_10=round(history[-1], 4))
                return
            if len(history) >= 3 and history[-1] - history[-3] < PLATEAU:
                break
    apply_search_params(index, best[1])
    row.update(params=best[1], recall_at_10=round(best[0], 4))
    row["reason"] = f"recall@{budget.k} reaches only {best[0]:.3f} < {budget.recall:g} (at {best[1] or 'defaults'})"


def describe_params(params: dict[str, Any]) -> str:
    """Search parameters for a log line: `` (nprobe=8)``, or nothing when the index needs none (an exact index)."""
    return f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else ""


def _latency(index: Any, xq: np.ndarray, k: int, row: dict) -> None:
    """p50/p99 of single queries on one thread, as a server worker answers them."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    times: list[float] = []
    try:
        for q in xq[:5]:  # warm the caches and the page mapping
            index.search(q[None], k)
        start = time.perf_counter()
        for q in xq[:LATENCY_QUERIES]:
            t0 = time.perf_counter()
            index.search(q[None], k)
            times.append(time.perf_counter() - t0)
            if len(times) >= 20 and time.perf_counter() - start > LATENCY_SECONDS:
                break
    finally:
        faiss.omp_set_num_threads(threads)
    row["p50_ms"], row["p99_ms"] = (round(float(np.percentile(times, q)) * 1e3, 3) for q in (50, 99))


def _ivf(index: Any) -> Any:
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _serialized_bytes(index: Any) -> int:
    """The index's size as written, through a temporary file: serialising in memory would double the peak."""
    with tempfile.TemporaryDirectory(prefix="relspace-auto-") as tmp:
        path = Path(tmp) / "x.faiss"
        write_faiss(index, path)
        return path.stat().st_size


def _n(blocks: Sequence[np.ndarray]) -> int:
    return sum(len(b) for b in blocks)


def _size(nbytes: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if nbytes < 1024 or unit == "G":
            return f"{nbytes:.0f}{unit}" if unit == "B" else f"{nbytes:.1f}{unit}"
        nbytes /= 1024
    return f"{nbytes}"
