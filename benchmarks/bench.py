"""relspace benchmarks: encoder overhead, query latency and FAISS index builds, as interleaved ratios.

The machine these run on is shared and noisy, so every figure that matters is a RATIO of two
measurements taken side by side: the two are alternated (A B, then B A, ...), repeated, and the
medians reported. Absolute figures are printed too, with the load average, for context only.

    python benchmarks/bench.py all                 # every section (~10 min on 2 shared cores)
    python benchmarks/bench.py image text --quick  # some sections, smaller sizes
    python benchmarks/bench.py workers             # DataLoader workers x torch threads sweep
    python benchmarks/bench.py image --sub-batch 16  # + a VARIANT encode, forward in slices of 16 (monkeypatch)
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

    n: int = 256  # images per measurement (--n 512 for the goal's size; each round then takes ~2x longer)
    batch_size: int = 64  # as in the goal: encode(..., batch_size=64) and forward(batch of 64)
    reps: int = 5  # interleaved rounds, as many as fit the budget; medians reported
    spec: str = "efficientnet-lite0"  # image encoder spec
    workers: int | None = None  # DataLoader workers for encode; None keeps the encoder's default
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    budget: float = BUDGET  # seconds; no new round starts past it
    variant: bool = False  # also time a VARIANT encode (monkeypatch: torch threads = cores - workers); measured worse
    sub_batch: int | None = None  # also time a VARIANT encode whose forward runs in sub-batches of this size


@dataclass
class SweepBench:
    """The same comparison over DataLoader workers x torch intra-op threads."""

    n: int = 128  # images per measurement
    batch_size: int = 64  # encode and forward batch size
    reps: int = 4  # interleaved rounds, as many as fit the budget; medians reported
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
    block: int = 20  # queries per block; paths alternate block by block (1: per query, see time_queries)
    seed: int = 0  # seed of the query sample
    budget: float = BUDGET  # seconds for all modalities; each stops early (after >= 20 queries) past its share
    proposed: bool = False  # also time search with the single-thread-BLAS projection monkeypatch (for old code)


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
    "workers": {"n": 64, "reps": 1},
    "text": {"n": 128, "reps": 10},
    "query": {"n": 60},
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


def variant_threads(enc: Any, n_items: int) -> int | None:
    """VARIANT (not in the library): while DataLoader workers decode on CPU, the forward gets the other cores."""
    from pipeline.encoders.torch_image import MIN_ITEMS_FOR_WORKERS

    workers = enc.num_workers if n_items >= MIN_ITEMS_FOR_WORKERS else 0
    if workers == 0 or not str(enc.device).startswith("cpu"):
        return None
    return max(1, (os.cpu_count() or 1) - workers)


class ForwardClock:
    """Times the forward calls that ``encode`` makes, by shadowing ``enc.forward`` on the instance.

    Behaviour is unchanged (same function, same arguments); the clock only splits an encode's wall time
    into forward and everything else (DataLoader start-up, waiting for decoded batches, collation).
    """

    def __init__(self, enc: Any):
        self.orig, self.total = enc.forward, 0.0
        enc.forward = self

    def __call__(self, batch: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.orig(batch)
        finally:
            self.total += time.perf_counter() - t0

    def timed(self, fn: Callable[[], Any], into: list[float]) -> None:
        """Run fn, appending the forward time it spent to ``into``."""
        self.total = 0.0
        fn()
        into.append(self.total)


@contextlib.contextmanager
def sub_batched(enc: Any, size: int | None) -> Iterator[None]:
    """VARIANT (monkeypatch of one encoder instance): the model runs on slices of ``size`` rows of each batch.

    Same weights, same inputs, same outputs (eval mode: no batch statistics); smaller activations, which the
    allocator can reuse instead of mapping fresh zeroed pages for every layer of every batch.
    """
    import torch

    model = enc._forward
    if size is not None:
        enc._forward = lambda x: torch.cat([model(c) for c in x.split(size)])
    try:
        yield
    finally:
        enc._forward = model


def bench_image(b: ImageBench, ds: Any) -> Table:
    from pipeline.encoders import create_encoder

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
        clock = ForwardClock(enc)
        inside: dict[str, list[float]] = {"encode": [], "forward": [], "variant": [], "sub_batch": []}
        if b.sub_batch:
            with sub_batched(enc, b.sub_batch):
                np.testing.assert_allclose(enc.encode(pngs[: b.batch_size], batch_size=b.batch_size),
                                           x_fwd[: b.batch_size], rtol=1e-4, atol=1e-4)

        def encode(_: int) -> None:
            clock.timed(lambda: enc.encode(pngs, batch_size=b.batch_size), inside["encode"])

        def forward(_: int) -> None:
            clock.timed(lambda: [enc.forward(x) for x in batches], inside["forward"])

        def variant(_: int) -> None:
            with torch_threads(variant_threads(enc, len(pngs))):
                clock.timed(lambda: enc.encode(pngs, batch_size=b.batch_size), inside["variant"])

        def sub_batch(_: int) -> None:
            with sub_batched(enc, b.sub_batch):
                clock.timed(lambda: enc.encode(pngs, batch_size=b.batch_size), inside["sub_batch"])

        fns = {"encode": encode, "forward": forward}
        if b.variant:
            fns["variant"] = variant
        if b.sub_batch:
            fns["sub_batch"] = sub_batch
        times = interleave(fns, b.reps, b.budget)

    def row(name: str, label: str) -> list[Any]:
        share = med([f / t for f, t in zip(inside[name], times[name])])
        return [label, b.n / med(times[name]), paired_ratio(times["forward"], times[name]),
                spread(times["forward"], times[name]), share, b.n / med(inside[name])]

    ratio = paired_ratio(times["forward"], times["encode"])
    rows = [row("encode", f"encode (workers={enc.num_workers}, threads={threads})")]
    if b.variant:
        rows.append(row("variant", f"VARIANT encode: threads={variant_threads(enc, len(pngs)) or threads} while "
                                   f"{enc.num_workers} worker(s) decode (monkeypatch)"))
    if b.sub_batch:
        rows.append(row("sub_batch", f"VARIANT encode: forward in sub-batches of {b.sub_batch} (monkeypatch)"))
    rows.append(row("forward", f"bare forward (threads={threads})"))
    rows.append(["decode+transform only, main process (once)", decode, float("nan"), "", float("nan"), float("nan")])
    goal = "met" if ratio >= 0.9 else "NOT met"
    rounds = len(times["encode"])
    fwd_ms = 1e3 * med(times["forward"]) / b.n
    return Table("image", f"Image encoding: {b.spec}, {rounds} rounds of {b.n} images, batch {b.batch_size}",
                 ["path", "images/s (median)", "ratio vs bare forward", "ratio IQR", "forward share of wall time",
                  "images/s inside forward"], rows,
                 [f"ratio = median over {rounds} interleaved rounds of t(bare forward)/t(path); goal >= 0.9: {goal}",
                  "forward share = time inside enc.forward / wall time of the call (the rest: DataLoader start-up, "
                  "waiting for decoded batches, collation)",
                  f"decode+transform: {1e3 / decode:.1f} ms/image in one process; forward {fwd_ms:.1f} ms/image"])


def bench_workers(b: SweepBench, ds: Any) -> Table:
    """Every (threads, workers) encode, each rep compared with the bare forward at the default thread count."""
    import torch

    from pipeline.encoders import create_encoder
    from pipeline.encoders.torch_image import default_num_workers

    enc = create_encoder(b.spec, "image", "cpu")
    default_workers, default_threads = enc.num_workers, torch.get_num_threads()
    pngs = take(ds["image"], b.n)
    batches = pretransform(enc, pngs, b.batch_size)
    enc.encode(pngs[: b.batch_size], batch_size=b.batch_size)  # warm-up
    enc.forward(batches[0])
    clock = ForwardClock(enc)
    inside: dict[str, list[float]] = {}

    def run_forward(t: int) -> Callable[[int], Any]:
        def fn(_: int) -> None:
            with torch_threads(t):
                clock.timed(lambda: [enc.forward(x) for x in batches], inside.setdefault(f"forward t={t}", []))
        return fn

    def run_encode(t: int, w: int) -> Callable[[int], Any]:
        def fn(_: int) -> None:
            enc.num_workers = w
            with torch_threads(t):
                clock.timed(lambda: enc.encode(pngs, batch_size=b.batch_size),
                            inside.setdefault(f"encode t={t} w={w}", []))
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
        for w in ("bare forward", *b.workers):
            name = f"forward t={t}" if w == "bare forward" else f"encode t={t} w={w}"
            share = med([f / x for f, x in zip(inside[name], times[name])])
            rows.append([t, w, b.n / med(times[name]), paired_ratio(times[ref], times[name]),
                         spread(times[ref], times[name]), share, b.n / med(inside[name])])
    best = max((r for r in rows if r[1] != "bare forward"), key=lambda r: r[3])
    return Table("workers", f"Image encode: DataLoader workers x torch threads ({b.n} images, batch {b.batch_size})",
                 ["torch threads", "num_workers", "images/s (median)", f"ratio vs bare forward t={default_threads}",
                  "ratio IQR", "forward share of wall time", "images/s inside forward"],
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

    from pipeline.encoders import create_encoder

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


STAGES = ("encode", "forward", "project", "faiss", "hits")
SMALL_ROWS = 64  # PROPOSED: at most this many rows are projected with single-threaded BLAS


class ProposedProjection:
    """PROPOSED (monkeypatch of one projector instance): small batches run BLAS on one thread.

    Applied to the library in 9962848 (``pipeline/relative.py``: ``SMALL_BATCH``); on that code this patch
    changes nothing, and ``--proposed`` only serves to measure older checkouts.

    A query's projection is a (1, d) @ (d, m) and a (1, m) @ (m, m) product, well under a millisecond on one core.
    OpenBLAS splits it over its threads anyway, and right after an encoder forward those threads compete with
    torch's still-spinning OpenMP threads: the product then waits milliseconds for a core. Also times each call.
    """

    def __init__(self, proj: Any):
        from threadpoolctl import ThreadpoolController

        self.proj, self.orig, self.times = proj, proj.transform, []
        self.ctl = ThreadpoolController()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        if len(x) <= SMALL_ROWS:
            with self.ctl.limit(limits=1, user_api="blas"):
                out = self.orig(x)
        else:
            out = self.orig(x)
        self.times.append(time.perf_counter() - t0)
        return out

    def __enter__(self) -> ProposedProjection:
        self.proj.transform = self  # the instance attribute shadows the method for this projector only
        return self

    def __exit__(self, *exc: object) -> None:
        del self.proj.transform


def time_queries(
    r: Any, modality: str, queries: list[Any], k: int, *, block: int = 20, warmup: int = 5,
    budget: float = BUDGET, proposed: bool = False,
) -> dict[str, list[float]]:
    """Time every query through each path, alternating the paths block by block (A B C D, D C B A, ...).

    Paths: ``search``; ``baseline`` (encode + raw FAISS on the precomputed vector); ``staged`` (a replay of
    search that times each stage); ``proposed`` (search with the PROPOSED projection). Each block runs one
    path on ``block`` consecutive queries after one untimed settling query, so that a path is timed in its
    own steady state: thread pools left spinning by the previous path (OpenBLAS, OpenMP) would otherwise
    slow whichever path comes next. ``block=1`` alternates per query, with no settling query.
    """
    from pipeline.index import search_faiss
    from pipeline.layout import text_space

    target = "image" if modality == "text" else "text"
    enc, index = r.encoder(modality), r.indexes[target]
    proj = r.projectors[text_space(r.languages[0]) if modality == "text" else "image"]
    kw = "text" if modality == "text" else "image"
    xqs = [r.embed(**{kw: q}) for q in queries]  # the precomputed relative query vectors
    patch = ProposedProjection(proj)
    with patch:  # the patch changes threads, not results
        np.testing.assert_allclose(proj.transform(enc.encode(queries[:1])), xqs[0], rtol=1e-5, atol=1e-6)
    clock = ForwardClock(enc) if hasattr(enc, "num_workers") else None  # image encoders: split out the forward
    out: dict[str, list[float]] = {name: [] for name in ("search", "baseline", "proposed", *STAGES)}

    def search(q: Any, xq: np.ndarray) -> None:
        r.search(**{kw: q}, k=k)

    def baseline(q: Any, xq: np.ndarray) -> None:
        enc.encode([q])
        index.search(xq, k)

    def with_patch(q: Any, xq: np.ndarray) -> None:
        with patch:
            r.search(**{kw: q}, k=k)

    def staged(q: Any, xq: np.ndarray) -> dict[str, float]:
        if clock is not None:
            clock.total = 0.0
        t = [time.perf_counter()]
        x = enc.encode([q], show_progress=False)
        t.append(time.perf_counter())
        x = proj.transform(x)
        t.append(time.perf_counter())
        D, I = search_faiss(index, x, k)
        t.append(time.perf_counter())
        r._hits(target, D[0], I[0])
        t.append(time.perf_counter())
        times = {name: t[j + 1] - t[j] for j, name in enumerate(("encode", "project", "faiss", "hits"))}
        times["forward"] = clock.total if clock is not None else float("nan")
        return times

    paths: dict[str, Callable[[Any, np.ndarray], Any]] = {"search": search, "baseline": baseline, "staged": staged}
    if proposed:
        paths["proposed"] = with_patch
    for q, xq in list(zip(queries, xqs))[:warmup]:
        for fn in paths.values():
            fn(q, xq)
    patch.times.clear()
    start = time.perf_counter()
    for j, b0 in enumerate(range(0, len(queries), block)):
        if b0 >= 20 and time.perf_counter() - start > budget:
            break
        chunk = list(zip(queries[b0 : b0 + block], xqs[b0 : b0 + block]))
        for name in list(paths) if j % 2 == 0 else list(paths)[::-1]:
            fn = paths[name]
            if block > 1:
                fn(*chunk[0])  # settle: the previous path's thread pools hand the cores back
                if name == "proposed":
                    patch.times.pop()
            for q, xq in chunk:
                t0 = time.perf_counter()
                res = fn(q, xq)
                dt = time.perf_counter() - t0
                if name == "staged":
                    for stage, v in res.items():
                        out[stage].append(v)
                else:
                    out[name].append(dt)
    out["project_proposed"] = list(patch.times)
    if clock is not None:
        del enc.forward
    return out


def bench_query(b: QueryBench, ds: Any) -> list[Table]:
    r = open_index(b)
    rng = np.random.default_rng(b.seed)
    sample = ds.select(rng.choice(len(ds), min(b.n, len(ds)), replace=False).tolist())
    rows, stage_rows, notes = [], [], []

    def ms(xs: Sequence[float], p: float = 50) -> float:
        return float(np.percentile(xs, p)) * 1e3 if xs else float("nan")

    for modality in b.modalities:
        queries = list(sample["caption"]) if modality == "text" else list(sample["image"])
        t = time_queries(r, modality, queries, b.k, block=b.block, warmup=b.warmup,
                         budget=b.budget / len(b.modalities), proposed=b.proposed)
        r50 = ms(t["search"]) / ms(t["baseline"])
        target = "image" if modality == "text" else "text"
        name = f"{modality} -> {target}"
        rows.append([name, len(t["search"]), ms(t["search"]), ms(t["search"], 99), ms(t["baseline"]),
                     ms(t["baseline"], 99), r50, ms(t["search"], 99) / ms(t["baseline"], 99)]
                    + ([ms(t["proposed"]), ms(t["proposed"]) / ms(t["baseline"])] if b.proposed else []))
        fwd = ms(t["forward"]) if not np.isnan(t["forward"]).any() else float("nan")
        stage_rows.append([name, ms(t["encode"]), fwd, ms([e - f for e, f in zip(t["encode"], t["forward"])]),
                           ms(t["project"])] + ([ms(t["project_proposed"])] if b.proposed else [])
                          + [ms(t["faiss"]), ms(t["hits"]), ms(t["search"]) - ms(t["baseline"])])
        notes.append(f"{modality} queries: p50 ratio {r50:.3f}, goal <= 1.2: {'met' if r50 <= 1.2 else 'NOT met'}")
    how = ("alternate per query" if b.block == 1 else
           f"alternate in blocks of {b.block} queries (each after one untimed settling query)")
    notes.insert(0, "baseline = encoder.encode([q]) + raw index.search(xq, k) on the precomputed relative vector; "
                    f"search, baseline, a per-stage replay of search{' and the PROPOSED search' * b.proposed} {how}")
    if b.proposed:
        notes.append(f"PROPOSED (monkeypatch): RelativeProjector.transform runs BLAS on one thread for <= "
                     f"{SMALL_ROWS} rows (threadpoolctl); in the library since 9962848, where it changes nothing")
    latency = Table("query", f"Query latency: Retriever.search, one query at a time, k={b.k} ({b.index_dir})",
                    ["query -> target", "queries", "search p50 ms", "search p99 ms", "baseline p50 ms",
                     "baseline p99 ms", "ratio p50", "ratio p99"]
                    + (["PROPOSED search p50 ms", "PROPOSED ratio p50"] if b.proposed else []),
                    rows, notes)
    stages = Table("query", "Where a query's time goes (per-stage replay of search, p50 ms)",
                   ["query -> target", "encode", "of which forward", "of which decode/DataLoader (images)", "project"]
                   + (["project PROPOSED"] if b.proposed else [])
                   + ["faiss search", "hits (pyarrow take + to_pylist)", "search - baseline"], stage_rows,
                   ["stages are timed separately, so their p50s need not add up to the search p50",
                    "text encode's forward is not split out (sentence-transformers encode)"])
    return [latency, stages]


# -- 4. index build ---------------------------------------------------------------------------------------


def synthetic_relative(b: IndexBench) -> tuple[np.ndarray, np.ndarray]:
    """xb, xq: Gaussian-mixture absolute vectors projected onto d anchors with the default projector."""
    from pipeline.relative import RelativeProjector

    rng = np.random.default_rng(b.seed)
    centres = rng.standard_normal((b.clusters, b.d_abs)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        return centres[rng.integers(b.clusters, size=n)] + rng.standard_normal((n, b.d_abs), dtype=np.float32)

    proj = RelativeProjector().fit(draw(b.d))  # the library's default projector options
    return proj.transform(draw(b.n)), proj.transform(draw(b.nq))


def recall_at_k(xb: np.ndarray, xq: np.ndarray, I: np.ndarray, I_gt: np.ndarray, D_gt: np.ndarray) -> float:
    """Share of returned ids whose exact score reaches the exact k-th score (so that ties count as hits)."""
    exact = np.einsum("qkd,qd->qk", xb[np.maximum(I, 0)], xq)
    exact[I < 0] = -np.inf
    return float((exact >= D_gt[:, -1:] - 1e-5).mean())


def bench_index(b: IndexBench) -> Table:
    import faiss

    from pipeline.config import ProjectorConfig
    from pipeline.index import build_faiss, write_faiss

    t0 = time.perf_counter()
    xb, xq = synthetic_relative(b)
    gen = time.perf_counter() - t0
    nonzero = float((xb[:1000] != 0).mean())
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
                  f"default RelativeProjector ({ProjectorConfig()}); {nonzero:.0%} of entries non-zero; "
                  f"generated in {gen:.1f} s",
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
    p.add_argument("--variant", action="store_true",
                   help="image: also time encode with torch threads = cores - workers (monkeypatch)")
    p.add_argument("--proposed", action="store_true",
                   help="query: also time search with the single-thread-BLAS projection monkeypatch (old code)")
    p.add_argument("--sub-batch", type=int, help="image: also time encode with the forward in sub-batches of N")
    p.add_argument("--workers", type=int, help="image: DataLoader workers for encode (default: the encoder's)")
    p.add_argument("--threads", type=int, help="torch intra-op threads for every section (default: torch's)")
    p.add_argument("--index-dir", default=QueryBench.index_dir, help="query: index directory (built if missing)")
    p.add_argument("--rebuild", action="store_true", help="query: rebuild the index even if it exists")
    p.add_argument("--factories", help="index: FAISS factory strings separated by ';' (they contain commas)")
    p.add_argument("--block", type=int, default=QueryBench.block,
                   help="query: paths alternate in blocks of this many queries; 1 alternates per query (%(default)s)")
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
    if section == "image" and args.variant:
        opts["variant"] = True
    if section == "image" and args.sub_batch:
        opts["sub_batch"] = args.sub_batch
    if section == "query" and args.proposed:
        opts["proposed"] = True
    if section == "image":
        opts.update({k: v for k, v in (("workers", args.workers), ("threads", args.threads)) if v is not None})
    if section == "query":
        opts.update(index_dir=args.index_dir, rebuild=args.rebuild, block=args.block)
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
        result = bench_index(desc) if section == "index" else fn(desc, ds)
        for table in result if isinstance(result, list) else [result]:
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
