"""relspace benchmarks: encoder overhead, query latency and FAISS index builds, as interleaved ratios.

The machine these run on is shared and noisy, so every figure that matters is a RATIO of two
measurements taken side by side: the two are alternated (A B, then B A, ...), repeated, and the
medians reported. Absolute figures are printed too, with the load average, for context only.

    python benchmarks/bench.py all                 # every section (~10 min on 2 cores)
    python benchmarks/bench.py image text --quick  # some sections, smaller sizes
    python benchmarks/bench.py workers             # DataLoader workers x torch threads sweep
    python benchmarks/bench.py query --json out.json

Sections: image, workers, text, query, index (see benchmarks/README.md for what each ratio means).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SECTIONS = ("image", "workers", "text", "query", "index")
BUDGET = 180.0  # seconds per section; no new round (or query) starts once it is spent


# -- descriptors ------------------------------------------------------------------------------------------


@dataclass
class ImageBench:
    """encode(pngs) (DataLoader decode+transform, then forward) vs the bare forward on pre-made tensors."""

    n: int = 512  # images per measurement
    batch_size: int = 64  # as in the goal: encode(..., batch_size=64) and forward(batch of 64)
    reps: int = 3  # interleaved repetitions; medians reported
    spec: str = "efficientnet-lite0"  # image encoder spec
    workers: int | None = None  # DataLoader workers for encode; None keeps the encoder's default
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    budget: float = BUDGET  # seconds; no new round starts past it
    proposed: bool = True  # also time the PROPOSED encode (monkeypatch: torch threads = cores - workers)


@dataclass
class SweepBench:
    """The same comparison over DataLoader workers x torch intra-op threads."""

    n: int = 256  # images per measurement
    batch_size: int = 64  # encode and forward batch size
    reps: int = 2  # interleaved repetitions; medians reported
    spec: str = "efficientnet-lite0"  # image encoder spec
    workers: list[int] = field(default_factory=lambda: [0, 1, 2])  # num_workers values tried
    threads: list[int] = field(default_factory=lambda: [1, 2])  # torch.set_num_threads values tried
    budget: float = BUDGET  # seconds; no new round starts past it


@dataclass
class TextBench:
    """encode(captions) vs the SentenceTransformer forward (with pooling) on pre-tokenized batches."""

    n: int = 256  # captions per round; successive rounds take successive slices of the 1,914 captions
    batch_size: int = 64  # encode and forward batch size
    reps: int = 30  # interleaved rounds (short ones, so that noise bursts hit few of them); medians reported
    spec: str = "minilm"  # text encoder spec
    budget: float = BUDGET  # seconds; no new round starts past it


@dataclass
class QueryBench:
    """Retriever.search one query at a time vs encode([q]) + raw FAISS search on the precomputed vector."""

    n: int = 200  # queries per modality (captions or PNGs of a seeded sample of items)
    k: int = 10  # neighbours per query
    index_dir: str = "/tmp/bench-idx"  # built there from the default config if missing
    rebuild: bool = False  # rebuild even if index_dir holds an index
    modalities: list[str] = field(default_factory=lambda: ["text", "image"])  # query modalities
    warmup: int = 5  # untimed queries first
    seed: int = 0  # seed of the query sample
    budget: float = BUDGET  # seconds for all modalities; each stops early (after >= 20 queries) past its share


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


QUICK = {
    "image": {"n": 128, "reps": 2},
    "workers": {"n": 128, "reps": 1},
    "text": {"n": 128, "reps": 10},
    "query": {"n": 50},
    "index": {"n": 40_000, "nq": 200},
}


# -- output -----------------------------------------------------------------------------------------------


@dataclass
class Table:
    """One section's result: a markdown table plus notes."""

    section: str  # section name
    title: str  # heading
    columns: list[str]  # header
    rows: list[list[Any]]  # cells (floats are formatted)
    notes: list[str] = field(default_factory=list)  # lines printed under the table
    seconds: float = 0.0  # wall time of the section
    load: tuple[float, float] = (0.0, 0.0)  # 1-min load average before and after

    def markdown(self) -> str:
        out = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
               "|" + "|".join("---" for _ in self.columns) + "|"]
        out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in self.rows]
        out += [""] + [f"- {n}" for n in self.notes]
        out.append(f"- section wall time {self.seconds:.0f} s; load average {self.load[0]:.2f} -> {self.load[1]:.2f}")
        return "\n".join(out)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if x != x:
            return "-"
        return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return str(x)


def machine() -> dict[str, Any]:
    import faiss
    import torch

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import subprocess

    root = Path(__file__).resolve().parent.parent
    git = "?"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        head = subprocess.check_output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.check_output(["git", "-C", str(root), "status", "--porcelain", "--", "pipeline"], text=True)
        git = head + (" + uncommitted pipeline/ changes" if dirty.strip() else "")
    return {
        "git": git,
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
    }


# -- timing -----------------------------------------------------------------------------------------------


def interleave(fns: dict[str, Callable[[int], Any]], reps: int, budget: float = BUDGET) -> dict[str, list[float]]:
    """Time each callable fn(round) up to ``reps`` times, alternating the order each round (A B C, C B A, ...).

    Whole rounds only, so every callable has the same number of samples; a round that would end past
    ``budget`` seconds is not started (the first always runs).
    """
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(reps):
        elapsed = time.perf_counter() - start
        if r and elapsed + elapsed / r > budget:
            break
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[name](r)
            times[name].append(time.perf_counter() - t0)
    return times


def spread(num: Sequence[float], den: Sequence[float]) -> str:
    """Interquartile range of the per-round ratios num[i] / den[i] (the single value if one round)."""
    rs = [a / b for a, b in zip(num, den)]
    lo, hi = np.percentile(rs, [25, 75])
    return f"{lo:.2f}-{hi:.2f}"


def med(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over repetitions of num[i] / den[i] (pairs measured back to back)."""
    return med([a / b for a, b in zip(num, den)])


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def load_openmoji() -> Any:
    from pipeline.config import load_config
    from pipeline.data import load_data

    return load_data(load_config(None).data)


def take(xs: Sequence[Any], n: int, start: int = 0) -> list[Any]:
    """n items from ``start``, cycling if the data is smaller."""
    return [xs[(start + i) % len(xs)] for i in range(n)]


# -- 1. image encoding ------------------------------------------------------------------------------------


def pretransform(enc: Any, pngs: Sequence[bytes], batch_size: int) -> list[Any]:
    """Decode and transform every PNG up front, stacked in batches exactly as the DataLoader collates them."""
    import torch

    from pipeline.data.images import load_image

    return [
        torch.stack([enc.transform(load_image(p)) for p in pngs[i : i + batch_size]])
        for i in range(0, len(pngs), batch_size)
    ]


def proposed_threads(enc: Any, n_items: int) -> int | None:
    """PROPOSED (not in the library): while DataLoader workers decode on CPU, the forward gets the other cores."""
    from pipeline.encoders.torch_image import MIN_ITEMS_FOR_WORKERS

    workers = enc.num_workers if n_items >= MIN_ITEMS_FOR_WORKERS else 0
    if workers == 0 or not str(enc.device).startswith("cpu"):
        return None
    return max(1, (os.cpu_count() or 1) - workers)


def bench_image(b: ImageBench, ds: Any) -> Table:
    from pipeline.encoders.base import create_encoder

    enc = create_encoder(b.spec, "image", "cpu")
    if b.workers is not None:
        enc.num_workers = b.workers
    pngs = take(ds["image"], b.n)
    with torch_threads(b.threads):
        import torch

        threads = torch.get_num_threads()
        t0 = time.perf_counter()
        batches = pretransform(enc, pngs, b.batch_size)
        decode = b.n / (time.perf_counter() - t0)
        # warm-up, and check the two paths compute the same thing
        x_enc = enc.encode(pngs[: 2 * b.batch_size], batch_size=b.batch_size)
        x_fwd = np.vstack([enc.forward(x) for x in batches[:2]])
        np.testing.assert_allclose(x_enc, x_fwd, rtol=1e-4, atol=1e-4)

        def proposed(_: int) -> None:
            with torch_threads(proposed_threads(enc, len(pngs))):
                enc.encode(pngs, batch_size=b.batch_size)

        fns = {"encode": lambda _: enc.encode(pngs, batch_size=b.batch_size),
               "forward": lambda _: [enc.forward(x) for x in batches]}
        if b.proposed:
            fns["proposed"] = proposed
        times = interleave(fns, b.reps, b.budget)
    ips = {k: b.n / med(v) for k, v in times.items()}
    ratio = paired_ratio(times["forward"], times["encode"])
    rows = [
        [f"encode (workers={enc.num_workers}, threads={threads})", ips["encode"], ratio,
         spread(times["forward"], times["encode"])],
        [f"bare forward (threads={threads})", ips["forward"], 1.0, ""],
        ["decode+transform only, main process (once)", decode, float("nan"), ""],
    ]
    if b.proposed:
        rows.insert(1, [f"PROPOSED encode: threads={proposed_threads(enc, len(pngs)) or threads} while "
                        f"{enc.num_workers} worker(s) decode (monkeypatch)", ips["proposed"],
                        paired_ratio(times["forward"], times["proposed"]),
                        spread(times["forward"], times["proposed"])])
    goal = "met" if ratio >= 0.9 else "NOT met"
    reps = len(times["encode"])
    return Table("image", f"Image encoding: {b.spec}, {b.n} images, batch {b.batch_size}",
                 ["path", "images/s (median)", "ratio vs bare forward", "ratio IQR"], rows,
                 [f"ratio = median over {reps} interleaved rounds of t(forward)/t(encode); goal >= 0.9: {goal}",
                  f"decode+transform costs {1e3 / decode:.1f} ms/image vs forward "
                  f"{1e3 / ips['forward']:.1f} ms/image"])


def bench_workers(b: SweepBench, ds: Any) -> Table:
    """Every (threads, workers) encode, each rep compared with the bare forward at the default thread count."""
    import torch

    from pipeline.encoders.base import create_encoder
    from pipeline.encoders.torch_image import default_num_workers

    enc = create_encoder(b.spec, "image", "cpu")
    default_workers, default_threads = enc.num_workers, torch.get_num_threads()
    pngs = take(ds["image"], b.n)
    batches = pretransform(enc, pngs, b.batch_size)
    enc.encode(pngs[: b.batch_size], batch_size=b.batch_size)  # warm-up
    enc.forward(batches[0])

    def run_forward(t: int) -> Callable[[int], Any]:
        def fn(_: int) -> None:
            with torch_threads(t):
                for x in batches:
                    enc.forward(x)
        return fn

    def run_encode(t: int, w: int) -> Callable[[int], Any]:
        def fn(_: int) -> None:
            enc.num_workers = w
            with torch_threads(t):
                enc.encode(pngs, batch_size=b.batch_size)
        return fn

    fns: dict[str, Callable[[int], Any]] = {}
    for t in b.threads:
        fns[f"forward t={t}"] = run_forward(t)
        for w in b.workers:
            fns[f"encode t={t} w={w}"] = run_encode(t, w)
    ref = f"forward t={default_threads}"
    if ref not in fns:
        fns[ref] = run_forward(default_threads)
    times = interleave(fns, b.reps, b.budget)
    enc.num_workers = default_workers
    rows = []
    for t in b.threads:
        rows.append([t, "bare forward", b.n / med(times[f"forward t={t}"]),
                     paired_ratio(times[ref], times[f"forward t={t}"]), spread(times[ref], times[f"forward t={t}"])])
        for w in b.workers:
            name = f"encode t={t} w={w}"
            rows.append([t, w, b.n / med(times[name]), paired_ratio(times[ref], times[name]),
                         spread(times[ref], times[name])])
    best = max((r for r in rows if r[1] != "bare forward"), key=lambda r: r[3])
    return Table("workers", f"Image encode: DataLoader workers x torch threads ({b.n} images, batch {b.batch_size})",
                 ["torch threads", "num_workers", "images/s (median)", f"ratio vs bare forward t={default_threads}",
                  "ratio IQR"],
                 rows,
                 [f"{len(times[ref])} interleaved rounds; ratio = median of "
                  f"t(bare forward, threads={default_threads})/t(row)",
                  f"current defaults: num_workers={default_workers} (default_num_workers()={default_num_workers()}), "
                  f"torch threads={default_threads}",
                  f"best: threads={best[0]}, num_workers={best[1]} ({best[3]:.3f})"])


# -- 2. text encoding -------------------------------------------------------------------------------------


def bench_text(b: TextBench, ds: Any) -> Table:
    import torch
    from sentence_transformers.util import batch_to_device

    from pipeline.encoders.base import create_encoder

    enc = create_encoder(b.spec, "text", "cpu")
    model = enc.model
    all_captions = list(ds["caption"])
    slices = [take(all_captions, b.n, r * b.n) for r in range(b.reps)]  # round r embeds slices[r]
    t0 = time.perf_counter()
    features = [[model.tokenize(c[i : i + b.batch_size]) for i in range(0, len(c), b.batch_size)] for c in slices]
    tokenize = b.n * b.reps / (time.perf_counter() - t0)

    def forward(r: int) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for f in features[r]:
                out.append(model(batch_to_device(f, model.device))["sentence_embedding"].float().cpu().numpy())
        return np.vstack(out)

    np.testing.assert_allclose(enc.encode(slices[0]), forward(0), rtol=1e-4, atol=1e-5)
    times = interleave({
        "encode": lambda r: enc.encode(slices[r], batch_size=b.batch_size),
        "forward": forward,
        "st_encode": lambda r: model.encode(slices[r], batch_size=b.batch_size, show_progress_bar=False),
    }, b.reps, b.budget)
    rounds = len(times["encode"])
    ips = {k: b.n / med(v) for k, v in times.items()}
    ratio = paired_ratio(times["forward"], times["encode"])
    total = sum(times["forward"]) / sum(times["encode"])
    rows = [
        ["relspace encode(captions)", ips["encode"], ratio, spread(times["forward"], times["encode"]), total],
        ["bare forward + pooling on pre-tokenized batches", ips["forward"], 1.0, "", 1.0],
        ["tokenize only (once, all rounds' captions)", tokenize, float("nan"), "", float("nan")],
        ["SentenceTransformer.encode(captions) in one call (what encode wraps)", ips["st_encode"],
         paired_ratio(times["forward"], times["st_encode"]), spread(times["forward"], times["st_encode"]),
         sum(times["forward"]) / sum(times["st_encode"])],
    ]
    goal = "met" if ratio >= 0.9 else "NOT met"
    return Table("text", f"Text encoding: {b.spec}, {rounds} rounds of {b.n} captions, batch {b.batch_size}",
                 ["path", "captions/s (median)", "ratio vs bare forward (median)", "ratio IQR", "ratio of sums"],
                 rows,
                 [f"ratio = median over {rounds} interleaved rounds of t(forward)/t(encode), each round on the same "
                  f"{b.n} captions; goal >= 0.9: {goal}"])


# -- 3. query latency -------------------------------------------------------------------------------------


def open_index(b: QueryBench) -> Any:
    from pipeline import Retriever
    from pipeline.config import load_config

    if b.rebuild or not (Path(b.index_dir) / "manifest.json").is_file():
        t0 = time.perf_counter()
        r = Retriever.build(load_config({}), b.index_dir)
        print(f"built {b.index_dir} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        return r
    return Retriever.load(b.index_dir)


STAGES = ("encode", "project", "faiss", "hits")


def time_queries(
    r: Any, modality: str, queries: list[Any], k: int, warmup: int, budget: float = BUDGET
) -> dict[str, list[float]]:
    """Per query, alternating the order: search; baseline (encode + raw FAISS); a replay of search by stage."""
    from pipeline.index import search_faiss
    from pipeline.layout import text_space

    target = "image" if modality == "text" else "text"
    enc, index = r.encoder(modality), r.indexes[target]
    proj = r.projectors[text_space(r.languages[0]) if modality == "text" else "image"]
    kw = "text" if modality == "text" else "image"
    xqs = [r.embed(**{kw: q}) for q in queries]  # the precomputed relative query vectors
    for q in queries[:warmup]:
        r.search(**{kw: q}, k=k)
        enc.encode([q])
    out: dict[str, list[float]] = {name: [] for name in ("search", "baseline", *STAGES)}
    start = time.perf_counter()
    for i, (q, xq) in enumerate(zip(queries, xqs)):
        if i >= 20 and time.perf_counter() - start > budget:
            break
        for step in ("search", "baseline", "staged") if i % 2 == 0 else ("staged", "baseline", "search"):
            if step == "search":
                t0 = time.perf_counter()
                r.search(**{kw: q}, k=k)
                out["search"].append(time.perf_counter() - t0)
            elif step == "baseline":
                t0 = time.perf_counter()
                enc.encode([q])
                index.search(xq, k)
                out["baseline"].append(time.perf_counter() - t0)
            else:
                t = [time.perf_counter()]
                x = enc.encode([q], show_progress=False)
                t.append(time.perf_counter())
                x = proj.transform(x)
                t.append(time.perf_counter())
                D, I = search_faiss(index, x, k)
                t.append(time.perf_counter())
                r._hits(target, D[0], I[0])
                t.append(time.perf_counter())
                for j, name in enumerate(STAGES):
                    out[name].append(t[j + 1] - t[j])
    return out


def bench_query(b: QueryBench, ds: Any) -> Table:
    r = open_index(b)
    rng = np.random.default_rng(b.seed)
    sample = ds.select(rng.choice(len(ds), min(b.n, len(ds)), replace=False).tolist())
    rows, notes = [], []

    def ms(xs: Sequence[float], p: float) -> float:
        return float(np.percentile(xs, p)) * 1e3

    for modality in b.modalities:
        queries = list(sample["caption"]) if modality == "text" else list(sample["image"])
        t = time_queries(r, modality, queries, b.k, b.warmup, b.budget / len(b.modalities))
        r50 = ms(t["search"], 50) / ms(t["baseline"], 50)
        r99 = ms(t["search"], 99) / ms(t["baseline"], 99)
        target = "image" if modality == "text" else "text"
        rows.append([f"{modality} -> {target}", len(t["search"]), ms(t["search"], 50), ms(t["search"], 99),
                     ms(t["baseline"], 50), ms(t["baseline"], 99), r50, r99]
                    + [ms(t[s], 50) for s in STAGES])
        notes.append(f"{modality} queries: p50 ratio {r50:.3f}, goal <= 1.2: {'met' if r50 <= 1.2 else 'NOT met'}")
    notes.insert(0, "baseline = encoder.encode([q]) + raw index.search(xq, k) on the precomputed relative vector; "
                    "search, baseline and a per-stage replay of search alternate per query")
    return Table("query", f"Query latency: Retriever.search, one query at a time, k={b.k} ({b.index_dir})",
                 ["query -> target", "queries", "search p50 ms", "search p99 ms", "baseline p50 ms",
                  "baseline p99 ms", "ratio p50", "ratio p99"] + [f"stage {s} p50 ms" for s in STAGES],
                 rows, notes)


# -- 4. index build ---------------------------------------------------------------------------------------


def synthetic_relative(b: IndexBench) -> tuple[np.ndarray, np.ndarray]:
    """xb, xq: Gaussian-mixture absolute vectors projected onto d anchors with the default projector."""
    from pipeline.relative import RelativeProjector

    rng = np.random.default_rng(b.seed)
    centres = rng.standard_normal((b.clusters, b.d_abs)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        return centres[rng.integers(b.clusters, size=n)] + rng.standard_normal((n, b.d_abs), dtype=np.float32)

    proj = RelativeProjector().fit(draw(b.d))  # default options: centred, column-normed, top-32, L2
    return proj.transform(draw(b.n)), proj.transform(draw(b.nq))


def recall_at_k(xb: np.ndarray, xq: np.ndarray, I: np.ndarray, I_gt: np.ndarray, D_gt: np.ndarray) -> float:
    """Share of returned ids whose exact score reaches the exact k-th score (so that ties count as hits)."""
    exact = np.einsum("qkd,qd->qk", xb[np.maximum(I, 0)], xq)
    exact[I < 0] = -np.inf
    return float((exact >= D_gt[:, -1:] - 1e-5).mean())


def bench_index(b: IndexBench) -> Table:
    import faiss

    from pipeline.index import build_faiss, write_faiss

    t0 = time.perf_counter()
    xb, xq = synthetic_relative(b)
    gen = time.perf_counter() - t0
    rows = []
    D_gt = I_gt = None
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
            D, I = index.search(xq, b.k)
            search = time.perf_counter() - t0
            if factory == "Flat":
                D_gt, I_gt = D, I
            if D_gt is None:  # no Flat in the list: make the ground truth once
                gt = faiss.IndexFlatIP(b.d)
                gt.add(xb)
                D_gt, I_gt = gt.search(xq, b.k)
            rows.append([factory, params, build, b.n / build, size / b.n,
                         recall_at_k(xb, xq, I, I_gt, D_gt), search / len(xq) * 1e6])
            del index
    return Table("index", f"FAISS build_faiss on synthetic relative vectors: n={b.n:,}, d={b.d}, "
                          f"{b.nq:,} queries, k={b.k}",
                 ["factory", "search params", "build s (train+add)", "vectors/s", "bytes/vector (file)",
                  f"recall@{b.k} vs Flat", "search us/query (batch)"], rows,
                 [f"vectors: {b.clusters} Gaussian clusters in {b.d_abs}-d, projected onto {b.d} anchors with the "
                  f"default RelativeProjector (top-32, L2-normalised); generated in {gen:.1f} s",
                  f"recall counts a returned id as a hit if its exact score >= the exact {b.k}-th score (ties allowed)",
                  f"faiss threads: {faiss.omp_get_max_threads()}; one run per factory (absolute figures, not ratios)"])


# -- driver -----------------------------------------------------------------------------------------------


DESCRIPTORS = {"image": ImageBench, "workers": SweepBench, "text": TextBench, "query": QueryBench,
               "index": IndexBench}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sections", nargs="+", choices=(*SECTIONS, "all"), help="what to run, in order")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer reps (a smoke run)")
    p.add_argument("--n", type=int, help="override the size of every selected section (images, captions, ...)")
    p.add_argument("--reps", type=int, help="override the interleaved repetitions")
    p.add_argument("--budget", type=float, default=BUDGET, help="seconds per section before rounds stop (%(default)s)")
    p.add_argument("--workers", type=int, help="image: DataLoader workers for encode (default: the encoder's)")
    p.add_argument("--threads", type=int, help="torch intra-op threads for every section (default: torch's)")
    p.add_argument("--index-dir", default=QueryBench.index_dir, help="query: index directory (built if missing)")
    p.add_argument("--rebuild", action="store_true", help="query: rebuild the index even if it exists")
    p.add_argument("--factories", help="index: FAISS factory strings separated by ';' (they contain commas)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p.parse_args(argv)


def descriptor(section: str, args: argparse.Namespace) -> Any:
    opts: dict[str, Any] = dict(QUICK[section]) if args.quick else {}
    if args.n is not None:
        opts["n"] = args.n
    if args.reps is not None and section not in ("query", "index"):
        opts["reps"] = args.reps
    if section != "index":
        opts["budget"] = args.budget
    if section == "image":
        opts.update({k: v for k, v in (("workers", args.workers), ("threads", args.threads)) if v is not None})
    if section == "query":
        opts.update(index_dir=args.index_dir, rebuild=args.rebuild)
    if section == "index" and args.factories:
        opts["factories"] = [f.strip() for f in args.factories.split(";") if f.strip()]
    return DESCRIPTORS[section](**opts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sections = list(SECTIONS) if "all" in args.sections else list(dict.fromkeys(args.sections))
    command = "python benchmarks/bench.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None
                                                                                 else argv))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    info = machine()
    print(f"## relspace benchmarks\n\n`{command}`\n")
    print(f"code: relspace {info['git']}\n")
    print(f"machine: {info['cpus']} cores ({info['cpu']}), {info['device']}; python {info['python']}, "
          f"torch {info['torch']} ({info['torch_threads']} threads), faiss {info['faiss']} "
          f"({info['faiss_threads']} threads); OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
          f"load average {os.getloadavg()[0]:.2f}\n", flush=True)
    ds = load_openmoji() if any(s != "index" for s in sections) else None
    tables = []
    for section in sections:
        desc = descriptor(section, args)
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        fn = {"image": bench_image, "workers": bench_workers, "text": bench_text, "query": bench_query}.get(section)
        table = bench_index(desc) if section == "index" else fn(desc, ds)
        table.seconds, table.load = time.perf_counter() - t0, (load0, os.getloadavg()[0])
        table.notes.append(f"descriptor: {desc}")
        print(table.markdown() + "\n", flush=True)
        tables.append(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "machine": info,
                                               "results": [asdict(t) for t in tables]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
