"""Workers section: the torch backend's image ``encode`` over DataLoader workers x torch threads, vs its forward."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .common import BUDGET, ForwardClock, Section, Table, interleave, med, paired_ratio, spread, take, torch_threads
from .image import pretransform


@dataclass
class SweepBench:
    """The torch backend's encode over DataLoader workers x torch intra-op threads (ORT sets its own threads)."""

    n: int = 128  # images per measurement
    batch_size: int = 64  # encode and forward batch size
    reps: int = 4  # interleaved rounds, as many as fit the budget; medians reported
    spec: str = "efficientnet-lite0"  # image encoder spec
    workers: list[int] = field(default_factory=lambda: [0, 1, 2])  # num_workers values tried
    threads: list[int] = field(default_factory=lambda: [1, 2])  # torch.set_num_threads values tried
    budget: float = BUDGET  # seconds; no new round starts past it


def run(b: SweepBench, ds: Any) -> list[Table]:
    """Every (threads, workers) encode, each round compared with the bare forward at the default thread count."""
    import torch

    from pipeline.encoders import create_encoder
    from pipeline.encoders.torch_image import default_num_workers

    enc = create_encoder(b.spec, "image", "cpu", image_backend="torch")
    default_workers, default_threads = enc.num_workers, torch.get_num_threads()
    pngs = take(ds["image"], b.n)
    batches = pretransform(enc, pngs, b.batch_size)
    enc.encode(pngs[: b.batch_size], batch_size=b.batch_size)  # warm-up
    enc.forward(batches[0])
    inside: dict[str, list[float]] = {}

    with ForwardClock(enc) as clock:

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
    return [Table(
        "workers",
        f"Image encode, torch backend: DataLoader workers x torch threads ({b.n} images, batch {b.batch_size})",
        ["torch threads", "num_workers", "images/s (median)", f"ratio vs bare forward t={default_threads}",
         "ratio IQR", "forward share of wall time", "images/s inside forward"],
        rows,
        [f"{len(times[ref])} interleaved rounds; ratio = median of t(bare forward, threads={default_threads})/t(row)",
         f"current defaults: num_workers={default_workers} (default_num_workers()={default_num_workers()}), "
         f"torch threads={default_threads}",
         f"best: threads={best[0]}, num_workers={best[1]} ({best[3]:.3f})"])]


SECTION = Section("workers", SweepBench, run, quick={"n": 64, "reps": 1}, options=("n", "reps", "budget"))
