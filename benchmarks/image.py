"""Image section: the library's ``encode(pngs)`` (default: ONNX Runtime) vs bare ``session.run``, and vs torch."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import BUDGET, ForwardClock, Section, Table, interleave, med, paired_ratio, spread, take, torch_threads


@dataclass
class ImageBench:
    """encode(pngs) with the default backend, bare ORT ``session.run`` and the torch encode, side by side."""

    n: int = 256  # images per measurement (--n 512 for the goal's size; each round then takes ~2x longer)
    batch_size: int = 64  # as in the goal: encode(..., batch_size=64) and session.run(batch of 64)
    reps: int = 5  # interleaved rounds, as many as fit the budget; medians reported
    spec: str = "efficientnet-lite0"  # image encoder spec
    workers: int | None = None  # DataLoader workers for encode; None keeps the encoder's default
    threads: int | None = None  # torch intra-op threads; None keeps torch's default (ORT sets its own)
    budget: float = BUDGET  # seconds; no new round starts past it


def pretransform(enc: Any, pngs: Sequence[bytes], batch_size: int) -> list[Any]:
    """Decode and transform every PNG up front, stacked in batches exactly as the DataLoader collates them."""
    import torch

    from pipeline.data.images import load_image

    return [
        torch.stack([enc.transform(load_image(p)) for p in pngs[i : i + batch_size]])
        for i in range(0, len(pngs), batch_size)
    ]


def cpu_ceiling(bare: Callable[[], Any], forward: Callable[[], Any], decode: Callable[[], Any],
                reps: int = 3) -> tuple[float, str]:
    """The highest ratio to ``bare`` that a path which must also decode can reach on this machine's cores.

    Such a path spends at least cpu(forward) + cpu(decode) of CPU time, so on c cores its wall time is at least
    that sum / c, while the bare run takes wall(bare): ceiling = c * wall(bare) / (cpu(forward) + cpu(decode)).
    Medians of ``reps`` runs of each. Returns the ceiling and a line that shows its terms.
    """
    def clock(fn: Callable[[], Any]) -> tuple[float, float]:
        w, c = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w, time.process_time() - c

    runs = {name: [clock(fn) for _ in range(reps)] for name, fn in
            (("bare", bare), ("forward", forward), ("decode", decode))}
    wall, cpu = ({k: med([r[i] for r in v]) for k, v in runs.items()} for i in (0, 1))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ceiling = cores * wall["bare"] / (cpu["forward"] + cpu["decode"])
    return ceiling, (f"CPU-time ceiling of library / bare ORT for any path that also decodes: {ceiling:.3f} = "
                     f"{cores} cores x wall(bare ORT) {wall['bare']:.2f} s / (CPU of the library's forward "
                     f"{cpu['forward']:.2f} s + CPU of its decode+transform {cpu['decode']:.2f} s); bare ORT "
                     f"kept {cpu['bare'] / wall['bare']:.2f} cores busy, the library's forward "
                     f"{cpu['forward'] / wall['forward']:.2f} (medians of {reps} runs each)")


def run(b: ImageBench, ds: Any) -> list[Table]:
    """Interleave the four paths on the same images; also split the default encode's time into forward and rest."""
    import onnxruntime as ort
    import torch

    from pipeline.data.images import load_image
    from pipeline.encoders import create_encoder
    from pipeline.encoders.prefetch import numpy_transform

    enc = create_encoder(b.spec, "image", "cpu")  # the library's default backend ("auto": ONNX Runtime on CPU)
    old = create_encoder(b.spec, "image", "cpu", image_backend="torch")
    for e in (enc, old):
        e.num_workers = e.num_workers if b.workers is None else b.workers
    if enc.backend != "onnx":
        raise RuntimeError(f"{b.spec}: the default backend is {enc.backend!r}, not onnx; nothing to compare")
    pngs = take(ds["image"], b.n)
    with torch_threads(b.threads), ForwardClock(enc) as clock:
        threads = torch.get_num_threads()
        t0 = time.perf_counter()
        batches = pretransform(enc, pngs, b.batch_size)
        decode = b.n / (time.perf_counter() - t0)
        arrays = [x.numpy() for x in batches]
        # the anchor: the library's exported file in a session with onnxruntime's default options
        session = ort.InferenceSession(str(enc.model_path), providers=["CPUExecutionProvider"])
        (inp,), (out,) = session.get_inputs(), session.get_outputs()

        def bare_ort() -> list[Any]:
            return [session.run([out.name], {inp.name: x})[0] for x in arrays]

        # warm-up, and check that every path computes the same vectors
        k = 2 * b.batch_size
        x_new = enc.encode(pngs[:k], batch_size=b.batch_size)
        x_ort = np.vstack(bare_ort()[:2])
        x_old = np.vstack([old.forward(x) for x in batches[:2]])
        for x in (x_ort, x_old):
            np.testing.assert_allclose(x_new, x, rtol=0, atol=1e-4)
        diff = float(np.abs(x_new - x_old).max())
        inside: dict[str, list[float]] = {"new": []}
        times = interleave({
            "new": lambda _: clock.timed(lambda: enc.encode(pngs, batch_size=b.batch_size), inside["new"]),
            "ort": lambda _: bare_ort(),
            "old": lambda _: old.encode(pngs, batch_size=b.batch_size),
        }, b.reps, b.budget)
        tail = numpy_transform(enc.transform)  # the library's own decode path, as encode runs it
        _, ceiling = cpu_ceiling(bare_ort, lambda: [enc.forward(x) for x in arrays],
                                 lambda: [tail(load_image(p)) for p in pngs])

    def ips(name: str) -> float:
        return b.n / med(times[name])

    share = med([f / t for f, t in zip(inside["new"], times["new"])])
    rows = [
        [f"library encode, default backend (onnx), decode included (workers={enc.num_workers})", ips("new"),
         paired_ratio(times["ort"], times["new"]), spread(times["ort"], times["new"]),
         paired_ratio(times["old"], times["new"]), spread(times["old"], times["new"])],
        [f"bare ORT session.run, default options, pre-transformed batches of {b.batch_size} (the anchor)",
         ips("ort"), 1.0, "", paired_ratio(times["old"], times["ort"]), spread(times["old"], times["ort"])],
        [f"library encode, backend torch: the previous default forward (threads={threads})",
         ips("old"), paired_ratio(times["ort"], times["old"]), spread(times["ort"], times["old"]), 1.0, ""],
        ["decode+transform only (torchvision's, as for the anchor's batches), main process (once)", decode,
         float("nan"), "", float("nan"), ""],
    ]
    rounds = len(times["new"])
    ratio = paired_ratio(times["ort"], times["new"])
    return [Table(
        "image", f"Image encoding: {b.spec}, {rounds} rounds of {b.n} images, batch {b.batch_size}",
        ["path", "images/s (median)", "ratio vs bare ORT", "IQR", "ratio vs previous default", "IQR"], rows,
        [f"ratio = median over {rounds} interleaved rounds of t(reference)/t(path), i.e. a throughput ratio; "
         f"goal library / bare ORT >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'} ({ratio:.3f})",
         f"forward share of the default encode's wall time: {share:.3f} (the rest: DataLoader start-up, "
         "waiting for decoded batches, collation)",
         f"max |ORT - torch| over the first {k} images: {diff:.2g}",
         f"decode+transform: {1e3 / decode:.1f} ms/image in one process", ceiling])]


SECTION = Section("image", ImageBench, run, quick={"n": 128, "reps": 2},
                  options=("n", "reps", "budget", "workers", "threads"))
