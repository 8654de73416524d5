"""Image section: ``encode(pngs)`` (DataLoader decode and transform, then forward) vs the bare forward."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import BUDGET, ForwardClock, Section, Table, interleave, med, paired_ratio, spread, take, torch_threads


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


def pretransform(enc: Any, pngs: Sequence[bytes], batch_size: int) -> list[Any]:
    """Decode and transform every PNG up front, stacked in batches exactly as the DataLoader collates them."""
    import torch

    from pipeline.data.images import load_image

    return [
        torch.stack([enc.transform(load_image(p)) for p in pngs[i : i + batch_size]])
        for i in range(0, len(pngs), batch_size)
    ]


def run(b: ImageBench, ds: Any) -> list[Table]:
    """Interleave encode and the bare forward; also split each call's wall time into forward and the rest."""
    import torch

    from pipeline.encoders import create_encoder

    enc = create_encoder(b.spec, "image", "cpu")
    if b.workers is not None:
        enc.num_workers = b.workers
    pngs = take(ds["image"], b.n)
    with torch_threads(b.threads), ForwardClock(enc) as clock:
        threads = torch.get_num_threads()
        t0 = time.perf_counter()
        batches = pretransform(enc, pngs, b.batch_size)
        decode = b.n / (time.perf_counter() - t0)
        # warm-up, and check that the two paths compute the same thing
        x_enc = enc.encode(pngs[: 2 * b.batch_size], batch_size=b.batch_size)
        x_fwd = np.vstack([enc.forward(x) for x in batches[:2]])
        np.testing.assert_allclose(x_enc, x_fwd, rtol=1e-4, atol=1e-4)
        inside: dict[str, list[float]] = {"encode": [], "forward": []}
        times = interleave({
            "encode": lambda _: clock.timed(lambda: enc.encode(pngs, batch_size=b.batch_size), inside["encode"]),
            "forward": lambda _: clock.timed(lambda: [enc.forward(x) for x in batches], inside["forward"]),
        }, b.reps, b.budget)

    def row(name: str, label: str) -> list[Any]:
        share = med([f / t for f, t in zip(inside[name], times[name])])
        return [label, b.n / med(times[name]), paired_ratio(times["forward"], times[name]),
                spread(times["forward"], times[name]), share, b.n / med(inside[name])]

    ratio = paired_ratio(times["forward"], times["encode"])
    rows = [row("encode", f"encode (workers={enc.num_workers}, threads={threads})"),
            row("forward", f"bare forward (threads={threads})"),
            ["decode+transform only, main process (once)", decode, float("nan"), "", float("nan"), float("nan")]]
    rounds = len(times["encode"])
    fwd_ms = 1e3 * med(times["forward"]) / b.n
    return [Table(
        "image", f"Image encoding: {b.spec}, {rounds} rounds of {b.n} images, batch {b.batch_size}",
        ["path", "images/s (median)", "ratio vs bare forward", "ratio IQR", "forward share of wall time",
         "images/s inside forward"], rows,
        [f"ratio = median over {rounds} interleaved rounds of t(bare forward)/t(path); goal >= 0.9: "
         f"{'met' if ratio >= 0.9 else 'NOT met'}",
         "forward share = time inside enc.forward / wall time of the call (the rest: DataLoader start-up, "
         "waiting for decoded batches, collation)",
         f"decode+transform: {1e3 / decode:.1f} ms/image in one process; forward {fwd_ms:.1f} ms/image"])]


SECTION = Section("image", ImageBench, run, quick={"n": 128, "reps": 2},
                  options=("n", "reps", "budget", "workers", "threads"))
