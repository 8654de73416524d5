"""Index section: ``build_faiss`` throughput, bytes per stored vector and recall@k vs Flat, on synthetic vectors."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import Section, Table


@dataclass
class IndexBench:
    """build_faiss throughput, bytes per stored vector and recall@k vs Flat, on synthetic relative vectors."""

    n: int = 100_000  # database vectors (xb)
    nq: int = 1_000  # query vectors (xq)
    d: int = 800  # relative dimension = anchor count
    d_abs: int = 384  # dimension of the synthetic absolute space the relative vectors are made from
    clusters: int = 1_000  # Gaussian clusters in the absolute space
    k: int = 10  # recall@k
    nprobe: int = 16  # IVF search-time probes
    factories: list[str] = field(default_factory=lambda: ["Flat", "IVF1024,Flat", "HNSW32", "IVF1024,PQ32"])
    seed: int = 0  # data seed


def synthetic_relative(b: IndexBench) -> tuple[np.ndarray, np.ndarray]:
    """xb, xq: Gaussian-mixture absolute vectors projected onto d anchors with the default projector."""
    from pipeline.space.relative import RelativeProjector

    rng = np.random.default_rng(b.seed)
    centres = rng.standard_normal((b.clusters, b.d_abs)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        return centres[rng.integers(b.clusters, size=n)] + rng.standard_normal((n, b.d_abs), dtype=np.float32)

    proj = RelativeProjector().fit(draw(b.d))  # the library's default projector options
    return proj.transform(draw(b.n)), proj.transform(draw(b.nq))


def recall_at_k(xb: np.ndarray, xq: np.ndarray, I: np.ndarray, D_gt: np.ndarray) -> float:
    """Share of returned ids whose exact score reaches the exact k-th score (so that ties count as hits)."""
    exact = np.einsum("qkd,qd->qk", xb[np.maximum(I, 0)], xq)
    exact[I < 0] = -np.inf
    return float((exact >= D_gt[:, -1:] - 1e-5).mean())


def run(b: IndexBench, ds: Any = None) -> list[Table]:
    """Build, write and search each factory; ``ds`` is unused (the vectors are synthetic)."""
    import faiss

    from pipeline.ann.faiss_index import build_faiss, write_faiss
    from pipeline.config import ProjectorConfig

    t0 = time.perf_counter()
    xb, xq = synthetic_relative(b)
    gen = time.perf_counter() - t0
    nonzero = float((xb[:1000] != 0).mean())
    gt = faiss.IndexFlatIP(b.d)  # exact ground truth, whatever the factories
    gt.add(xb)
    D_gt, _ = gt.search(xq, b.k)
    del gt
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        for factory in b.factories:
            t0 = time.perf_counter()
            index = build_faiss(xb, factory, train_size=b.n, seed=b.seed)
            build = time.perf_counter() - t0
            path = Path(tmp) / "x.faiss"
            write_faiss(index, path)
            size = path.stat().st_size
            path.unlink()
            params = ""
            if "IVF" in factory:
                faiss.extract_index_ivf(index).nprobe = b.nprobe
                params = f"nprobe={b.nprobe}"
            elif "HNSW" in factory:
                params = f"efSearch={index.hnsw.efSearch}"
            t0 = time.perf_counter()
            _, I = index.search(xq, b.k)
            search = time.perf_counter() - t0
            rows.append([factory, params, build, b.n / build, size / b.n,
                         recall_at_k(xb, xq, I, D_gt), search / len(xq) * 1e6])
            del index
    return [Table(
        "index", f"FAISS build_faiss on synthetic relative vectors: n={b.n:,}, d={b.d}, {b.nq:,} queries, k={b.k}",
        ["factory", "search params", "build s (train+add)", "vectors/s", "bytes/vector (file)",
         f"recall@{b.k} vs Flat", "search us/query (batch)"], rows,
        [f"vectors: {b.clusters} Gaussian clusters in {b.d_abs}-d, projected onto {b.d} anchors with the "
         f"default RelativeProjector ({ProjectorConfig()}); {nonzero:.0%} of entries non-zero; "
         f"generated in {gen:.1f} s",
         f"recall counts a returned id as a hit if its exact score >= the exact {b.k}-th score (ties allowed)",
         f"faiss threads: {faiss.omp_get_max_threads()}; one run per factory (absolute figures, not ratios)"])]


SECTION = Section("index", IndexBench, run, quick={"n": 40_000, "nq": 200}, options=("n", "factories"),
                  needs_data=False)
