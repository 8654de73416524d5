"""The shared benchmark helper: section descriptors, interleaved timing, paired ratios, tables, machine info, data."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUDGET = 180.0  # seconds per section; no new round (or block of queries) starts once it is spent
ROOT = Path(__file__).resolve().parent.parent  # the repository, for the git commit in the header


# -- sections ---------------------------------------------------------------------------------------------


@dataclass
class Section:
    """One benchmark section as ``python -m benchmarks`` runs it."""

    name: str  # the section's name on the command line
    descriptor: type  # its benchmark dataclass; every field has a comment
    run: Callable[[Any, Any], list[Table]]  # run(descriptor, OpenMoji dataset or None) -> tables
    quick: dict[str, Any] = field(default_factory=dict)  # descriptor fields that --quick overrides
    options: tuple[str, ...] = ()  # CLI options (argparse dests) that map onto descriptor fields of the same name
    needs_data: bool = True  # whether run() needs the OpenMoji dataset


# -- output -----------------------------------------------------------------------------------------------


@dataclass
class Table:
    """One result: a markdown table plus notes."""

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
        out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in self.rows]
        out += [""] + [f"- {n}" for n in self.notes]
        out.append(f"- section wall time {self.seconds:.0f} s; load average {self.load[0]:.2f} -> {self.load[1]:.2f}")
        return "\n".join(out)


def timed_tables(fn: Callable[[], list[Table]]) -> list[Table]:
    """Run ``fn`` and stamp its wall time and the load average before and after on each table it returns."""
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    tables = fn()
    for table in tables:
        table.seconds, table.load = time.perf_counter() - t0, (load0, os.getloadavg()[0])
    return tables


def fmt(x: Any) -> str:
    """A table cell: 3 significant digits below 100, thousands separators above; NaN prints as '-'."""
    if isinstance(x, float):
        if x != x:
            return "-"
        return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return str(x)


def machine() -> dict[str, Any]:
    """Git commit (flagged when pipeline/ has uncommitted changes), CPU, library versions and thread counts."""
    import faiss
    import torch

    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    git = "?"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        head = subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.check_output(["git", "-C", str(ROOT), "status", "--porcelain", "--", "pipeline"], text=True)
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
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }


def machine_line(info: dict[str, Any]) -> str:
    return (f"machine: {info['cpus']} cores ({info['cpu']}), {info['device']}; python {info['python']}, "
            f"torch {info['torch']} ({info['torch_threads']} threads), faiss {info['faiss']} "
            f"({info['faiss_threads']} threads); OMP_WAIT_POLICY={info['omp_wait_policy']}; "
            f"load average {os.getloadavg()[0]:.2f}")


# -- timing -----------------------------------------------------------------------------------------------


def round_order(names: Sequence[str], r: int) -> list[str]:
    """The order of round ``r``: as given in even rounds, reversed in odd ones (A B C, C B A, ...)."""
    return list(names) if r % 2 == 0 else list(names)[::-1]


def interleave(fns: dict[str, Callable[[int], Any]], reps: int, budget: float = BUDGET) -> dict[str, list[float]]:
    """Time each callable ``fn(round)`` up to ``reps`` times, alternating the order each round.

    Whole rounds only, so every callable has the same number of samples; a round that would end past
    ``budget`` seconds is not started (the first always runs).

    Returns:
        Seconds per round, by name.
    """
    times: dict[str, list[float]] = {n: [] for n in fns}
    start = time.perf_counter()
    for r in range(reps):
        elapsed = time.perf_counter() - start
        if r and elapsed + elapsed / r > budget:
            break
        for name in round_order(list(fns), r):
            t0 = time.perf_counter()
            fns[name](r)
            times[name].append(time.perf_counter() - t0)
    return times


def med(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of num[i] / den[i] (pairs measured back to back)."""
    return med([a / b for a, b in zip(num, den)])


def spread(num: Sequence[float], den: Sequence[float]) -> str:
    """Interquartile range of the per-round ratios num[i] / den[i] (the single value if one round)."""
    lo, hi = np.percentile([a / b for a, b in zip(num, den)], [25, 75])
    return f"{lo:.2f}-{hi:.2f}"


def percentile(xs: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100, linear interpolation); NaN when there is no sample."""
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch intra-op threads set to ``n`` inside the block (None leaves them alone)."""
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class ForwardClock:
    """Times the ``forward`` calls that an encoder's ``encode`` makes, inside a ``with`` block.

    It shadows ``enc.forward`` on the instance with a timed call of the same method and arguments, so that
    behaviour is unchanged; it only splits an encode's wall time into forward and everything else
    (DataLoader start-up, waiting for decoded batches, collation).
    """

    def __init__(self, enc: Any):
        self.enc, self.orig, self.total = enc, enc.forward, 0.0

    def __enter__(self) -> ForwardClock:
        self.enc.forward = self
        return self

    def __exit__(self, *exc: object) -> None:
        del self.enc.forward  # the class's method shows through again

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


# -- data -------------------------------------------------------------------------------------------------


def load_openmoji() -> Any:
    """The default data: OpenMoji, 1,914 items with PNG bytes (``image``) and captions (``caption``)."""
    from pipeline.config import load_config
    from pipeline.data import load_data

    return load_data(load_config(None).data)


def take(xs: Sequence[Any], n: int, start: int = 0) -> list[Any]:
    """n items from ``start``, cycling if the data is smaller."""
    return [xs[(start + i) % len(xs)] for i in range(n)]
