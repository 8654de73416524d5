"""Query section: ``Retriever.search`` one query at a time vs encode + raw FAISS, alternated in blocks."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import BUDGET, ForwardClock, Section, Table, percentile, round_order

logger = logging.getLogger(__name__)

STAGES = ("encode", "forward", "project", "faiss", "hits")


@dataclass
class QueryBench:
    """Retriever.search one query at a time vs encode([q]) + raw FAISS search on the precomputed vector."""

    n: int = 200  # queries per modality (captions or PNGs of a seeded sample of items)
    k: int = 10  # neighbours per query
    index_dir: str = "/tmp/bench-idx"  # built there from the default config if missing
    rebuild: bool = False  # rebuild even if index_dir holds an index
    modalities: list[str] = field(default_factory=lambda: ["text", "image"])  # query modalities
    warmup: int = 5  # untimed queries first
    block: int = 20  # queries per block; paths alternate block by block (1: per query, see time_queries)
    seed: int = 0  # seed of the query sample
    budget: float = BUDGET  # seconds for all modalities; each stops early (after >= 20 queries) past its share


def open_index(b: QueryBench) -> Any:
    """The index at ``b.index_dir``, built there from the default config if it is missing (or ``b.rebuild``)."""
    from pipeline import Retriever
    from pipeline.config import load_config

    if b.rebuild or not (Path(b.index_dir) / "manifest.json").is_file():
        t0 = time.perf_counter()
        r = Retriever.build(load_config({}), b.index_dir)
        logger.info("built %s in %.1f s", b.index_dir, time.perf_counter() - t0)
        return r
    return Retriever.load(b.index_dir)


def time_queries(
    r: Any, modality: str, queries: list[Any], k: int, *, block: int = 20, warmup: int = 5, budget: float = BUDGET,
) -> dict[str, list[float]]:
    """Time every query through each path, alternating the paths block by block (A B C, C B A, ...).

    Paths: ``search``; ``baseline`` (encode + raw FAISS on the precomputed vector); ``staged`` (a replay of
    search through the public API that times each stage). Each block runs one path on ``block`` consecutive
    queries after one untimed settling query, so that a path is timed in its own steady state: thread pools
    left spinning by the previous path (OpenBLAS, OpenMP) would otherwise slow whichever path comes next.
    ``block=1`` alternates per query, with no settling query.

    Returns:
        Seconds per query for ``search`` and ``baseline``, and per stage of the replay (``STAGES``).
    """
    from pipeline.core.spaces import IMAGE, SpaceKey

    target = "image" if modality == "text" else "text"
    enc, index = r.encoder(modality), r.indexes[target]
    proj = r.projectors[SpaceKey.text(r.languages[0]) if modality == "text" else IMAGE]
    xqs = [r.embed(**{modality: q}) for q in queries]  # the precomputed relative query vectors
    np.testing.assert_allclose(proj.transform(enc.encode(queries[:1])), xqs[0], rtol=1e-5, atol=1e-6)
    # image encoders: split the forward out of encode; text encode's forward is not split out
    clock = ForwardClock(enc) if enc.modality == "image" else None
    out: dict[str, list[float]] = {name: [] for name in ("search", "baseline", *STAGES)}

    def search(q: Any, xq: np.ndarray) -> None:
        r.search(**{modality: q}, k=k)

    def baseline(q: Any, xq: np.ndarray) -> None:
        enc.encode([q])
        index.search(xq, k)

    def staged(q: Any, xq: np.ndarray) -> dict[str, float]:
        if clock is not None:
            clock.total = 0.0
        t = [time.perf_counter()]
        x = enc.encode([q], show_progress=False)
        t.append(time.perf_counter())
        x = proj.transform(x)
        t.append(time.perf_counter())
        index.search(x, k)
        t.append(time.perf_counter())
        r.search_vectors(x, k, target=target)  # FAISS again, then the hits
        t.append(time.perf_counter())
        return {"encode": t[1] - t[0], "project": t[2] - t[1], "faiss": t[3] - t[2],
                "hits": (t[4] - t[3]) - (t[3] - t[2]),
                "forward": clock.total if clock is not None else float("nan")}

    paths: dict[str, Callable[[Any, np.ndarray], Any]] = {"search": search, "baseline": baseline, "staged": staged}
    with clock or contextlib.nullcontext():
        for q, xq in list(zip(queries, xqs))[:warmup]:
            for fn in paths.values():
                fn(q, xq)
        start = time.perf_counter()
        for j, b0 in enumerate(range(0, len(queries), block)):
            if b0 >= 20 and time.perf_counter() - start > budget:
                break
            chunk = list(zip(queries[b0 : b0 + block], xqs[b0 : b0 + block]))
            for name in round_order(list(paths), j):
                fn = paths[name]
                if block > 1:
                    fn(*chunk[0])  # settle: the previous path's thread pools hand the cores back
                for q, xq in chunk:
                    t0 = time.perf_counter()
                    res = fn(q, xq)
                    dt = time.perf_counter() - t0
                    if name == "staged":
                        for stage, v in res.items():
                            out[stage].append(v)
                    else:
                        out[name].append(dt)
    return out


def run(b: QueryBench, ds: Any) -> list[Table]:
    """Latency of both query modalities, and where a query's time goes."""
    r = open_index(b)
    rng = np.random.default_rng(b.seed)
    sample = ds.select(rng.choice(len(ds), min(b.n, len(ds)), replace=False).tolist())
    rows, stage_rows, notes = [], [], []

    def ms(xs: list[float], q: float = 50) -> float:
        return percentile(xs, q) * 1e3

    for modality in b.modalities:
        queries = list(sample["caption"]) if modality == "text" else list(sample["image"])
        t = time_queries(r, modality, queries, b.k, block=b.block, warmup=b.warmup,
                         budget=b.budget / len(b.modalities))
        r50 = ms(t["search"]) / ms(t["baseline"])
        name = f"{modality} -> {'image' if modality == 'text' else 'text'}"
        rows.append([name, len(t["search"]), ms(t["search"]), ms(t["search"], 99), ms(t["baseline"]),
                     ms(t["baseline"], 99), r50, ms(t["search"], 99) / ms(t["baseline"], 99)])
        fwd = ms(t["forward"]) if not np.isnan(t["forward"]).any() else float("nan")
        stage_rows.append([name, ms(t["encode"]), fwd, ms([e - f for e, f in zip(t["encode"], t["forward"])]),
                           ms(t["project"]), ms(t["faiss"]), ms(t["hits"]), ms(t["search"]) - ms(t["baseline"])])
        notes.append(f"{modality} queries: p50 ratio {r50:.3f}, goal <= 1.2: {'met' if r50 <= 1.2 else 'NOT met'}")
    how = ("alternate per query" if b.block == 1 else
           f"alternate in blocks of {b.block} queries (each after one untimed settling query)")
    notes.insert(0, "baseline = encoder.encode([q]) + raw index.search(xq, k) on the precomputed relative vector; "
                    f"search, baseline and a per-stage replay of search {how}")
    latency = Table("query", f"Query latency: Retriever.search, one query at a time, k={b.k} ({b.index_dir})",
                    ["query -> target", "queries", "search p50 ms", "search p99 ms", "baseline p50 ms",
                     "baseline p99 ms", "ratio p50", "ratio p99"], rows, notes)
    stages = Table("query", "Where a query's time goes (per-stage replay of search, p50 ms)",
                   ["query -> target", "encode", "of which forward", "of which decode/DataLoader (images)", "project",
                    "faiss search", "hits (search_vectors - faiss)", "search - baseline"], stage_rows,
                   ["stages are timed separately, so their p50s need not add up to the search p50",
                    "hits = Retriever.search_vectors (FAISS + pyarrow take + to_pylist) minus a raw FAISS search "
                    "of the same vector, per query",
                    "text encode's forward is not split out (sentence-transformers encode)"])
    return [latency, stages]


SECTION = Section("query", QueryBench, run, quick={"n": 60},
                  options=("n", "budget", "index_dir", "rebuild", "block"))
