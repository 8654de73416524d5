"""The FAISS indexes ``index.factory: auto`` may choose: a registry of factory builders with memory formulas.

Each entry turns (n, dim) into a factory string and estimates the resident bytes before anything is built,
so that an index over the memory budget is never built at all. The formulas follow FAISS's storage:
codes per vector, 8-byte ids in IVF lists, coarse centroids, PQ/SQ/OPQ training tables, HNSW links.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..core.registry import Registry

SMALL_N = 4096  # below this many vectors exact search is fast and training is noisy: only Flat competes
HNSW_M = 32  # HNSW links per node (2*M at level 0)
IVF_IDS = 8  # bytes of the int64 id an IVF list stores beside each code


@dataclass(frozen=True)
class Candidate:
    """One index kind the chooser may build."""

    name: str  # registry name, e.g. "ivf-sq8"
    rank: int  # exactness order: lower ranks are tried first
    factory: Callable[[int, int, int], str]  # (n, dim, training rows) -> FAISS factory string
    nbytes: Callable[[int, int, int], int]  # (n, dim, training rows) -> resident bytes, estimated
    trained: bool  # needs a training sample (its bytes count in the build peak)
    min_n: int = SMALL_N  # fewer vectors than this: not tried (Flat is exact and fast there)


CANDIDATES: Registry[Candidate] = Registry("index candidate")


def register(c: Candidate) -> None:
    CANDIDATES.add(c.name, c)


def ordered() -> list[Candidate]:
    """Every candidate, most exact first."""
    return sorted((CANDIDATES.get(n) for n in CANDIDATES), key=lambda c: c.rank)


def nlist(n: int, ntrain: int) -> int:
    """IVF lists: the power of two nearest 4*sqrt(n), at most ntrain/39 (FAISS wants 39 training rows a list)."""
    lists = 2 ** round(math.log2(max(4 * math.sqrt(n), 1)))
    while lists > 1 and lists * 39 > ntrain:
        lists //= 2
    return lists


def pq_m(dim: int, dims_per_code: int) -> int:
    """PQ sub-quantizers: the largest divisor of dim that gives each at least ``dims_per_code`` dimensions."""
    return max(m for m in range(1, max(dim // dims_per_code, 1) + 1) if dim % m == 0)


def _centroids(n: int, dim: int, ntrain: int) -> int:
    return nlist(n, ntrain) * dim * 4


def _fastscan_pad(n: int, dim: int, ntrain: int, m: int) -> int:
    """4-bit fast-scan codes are packed 32 vectors a block, so each list rounds up to a multiple of 32."""
    return nlist(n, ntrain) * 32 * m // 2


register(Candidate(
    "flat", 0, lambda n, d, t: "Flat", lambda n, d, t: n * d * 4, trained=False, min_n=0))
# IVF-Flat before HNSW: the same float32 codes, less memory (8 B ids vs 2*M*4 B links a vector) and a build
# about 8x faster (100k x 800: 24 s vs 198 s on 2 cores); HNSW is tried when IVF misses the latency budget.
register(Candidate(
    "ivf-flat", 1, lambda n, d, t: f"IVF{nlist(n, t)},Flat",
    lambda n, d, t: n * (d * 4 + IVF_IDS) + _centroids(n, d, t), trained=True))
register(Candidate(
    "hnsw", 2, lambda n, d, t: f"HNSW{HNSW_M}",
    # level 0 holds 2*M int32 links; upper levels add M/(M-1) links on average; 8 B offset + 4 B level a node
    lambda n, d, t: n * (d * 4 + 2 * HNSW_M * 4 + 4 * HNSW_M // (HNSW_M - 1) + 12), trained=False))
register(Candidate(
    "ivf-sqfp16", 3, lambda n, d, t: f"IVF{nlist(n, t)},SQfp16",
    lambda n, d, t: n * (d * 2 + IVF_IDS) + _centroids(n, d, t), trained=True))
register(Candidate(
    "ivf-sq8", 4, lambda n, d, t: f"IVF{nlist(n, t)},SQ8",
    lambda n, d, t: n * (d + IVF_IDS) + _centroids(n, d, t) + 2 * d * 4, trained=True))
# 4-bit fast-scan PQ (4 dims a code) shortlists k*k_factor rows that SQ8 codes re-rank: SQ8's recall at a
# fraction of its scan time, for when IVF-SQ8 misses the latency budget.
register(Candidate(
    "ivf-pq-refine-sq8", 5, lambda n, d, t: f"IVF{nlist(n, t)},PQ{pq_m(d, 4)}x4fs,Refine(SQ8)",
    lambda n, d, t: (n * (pq_m(d, 4) // 2 + IVF_IDS + d) + _centroids(n, d, t) + _fastscan_pad(n, d, t, pq_m(d, 4))
                     + 16 * d * 4 + 2 * d * 4), trained=True))
# Half SQ8's memory: 4-bit scalar codes re-rank the shortlist. OPQ would help PQ codes more, but its training
# took 74 s on 10k x 64 rows (2 loaded cores) against 2 s for IVF-SQ8, and grows with dim^3 per iteration.
register(Candidate(
    "ivf-pq-refine-sq4", 6, lambda n, d, t: f"IVF{nlist(n, t)},PQ{pq_m(d, 4)}x4fs,Refine(SQ4)",
    lambda n, d, t: (n * (pq_m(d, 4) // 2 + IVF_IDS + (d + 1) // 2) + _centroids(n, d, t)
                     + _fastscan_pad(n, d, t, pq_m(d, 4)) + 16 * d * 4 + 2 * d * 4), trained=True))
register(Candidate(
    "ivf-pq", 7, lambda n, d, t: f"IVF{nlist(n, t)},PQ{pq_m(d, 4)}x4fs",
    lambda n, d, t: (n * (pq_m(d, 4) // 2 + IVF_IDS) + _centroids(n, d, t) + _fastscan_pad(n, d, t, pq_m(d, 4))
                     + 16 * d * 4), trained=True))
