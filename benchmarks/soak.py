"""Soak run of ``relspace serve`` under live updates: minutes of mixed queries while other processes change the index.

Copies INDEX, starts ``relspace serve`` on the copy on a free loopback port (a subprocess), and sends text and
image queries from ``--concurrency`` threads for ``--minutes``. Every ``--update-every`` seconds one
``relspace add`` puts the items of ``docs/new-items`` in and one ``relspace remove`` takes them out again, each
in its own process, so the index keeps changing but not growing. Prints a markdown table per minute:
requests, errors, p50/p99 latency, the index generations that answered, and the server's RSS; with the RSS
after warm-up and at the end. Stops by itself at the deadline (and after ``--max-requests``).

    python -m benchmarks.soak                                  # 10 min, concurrency 16, indexes/openmoji
    python -m benchmarks.soak --minutes 0.2 --concurrency 2 --index /tmp/small --update-every 5

Only loopback is used: the server is started here and bound to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .common import ROOT, Table, fmt, machine, machine_line, percentile, timed_tables
from .load_test import QUERIES, checkout_env, server_process

NEW_ITEMS = ROOT / "docs" / "new-items"  # two items with images and en/es captions, added and removed each cycle
BUCKET_S = 60.0  # the table's rows: one per minute


@dataclass
class SoakBench:
    """One soak run."""

    index: Path = ROOT / "indexes" / "openmoji"  # the index to copy and serve (relspace build configs/openmoji.yaml)
    minutes: float = 10.0  # how long queries are sent
    concurrency: int = 16  # client threads, each with one request in flight
    update_every: float = 60.0  # seconds between the starts of add + remove cycles
    image_every: int = 4  # one query in this many is an image upload; the others are text
    k: int = 10  # hits per search
    request_timeout: float = 60.0  # per request, in seconds; a timeout counts as an error
    startup_timeout: float = 300.0  # seconds to wait for the server to answer /health
    warmup: float = 30.0  # seconds of uncounted queries at full concurrency before the clock starts and RSS is taken
    max_requests: int = 1_000_000  # a hard cap besides the deadline


@dataclass
class Sample:
    """One request: when it was sent (seconds from start), its latency, and what answered."""

    t: float
    ms: float
    error: str | None
    generation: int | None


@dataclass
class Update:
    """One ``relspace add`` or ``remove`` run beside the server."""

    op: str
    t: float  # start, seconds from the start of the run
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class SoakResult:
    bench: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (seconds from start, server RSS)
    generations: tuple[int, int] = (0, 0)  # the server's (/health) at the start and once every update is done
    wall_s: float = 0.0


def rss_mib(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux), in MiB; NaN if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def add_config(where: Path) -> Path:
    """configs/new-items.yaml with absolute paths, its cache inside ``where`` (nothing of the user's is touched)."""
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "new-items.yaml").read_text())
    cfg["data"].update(path=str(NEW_ITEMS), cache_dir=str(where / "cache"))
    path = where / "new-items.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(op: str, args: list[str], t0: float, timeout: float) -> Update:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pipeline", "-q", op, *args]
    try:
        run = subprocess.run(cmd, env=checkout_env(), capture_output=True, text=True, timeout=timeout)
        ok, detail = run.returncode == 0, (run.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        ok, detail = False, f"timed out after {timeout:.0f} s"
    return Update(op, round(start - t0, 1), round(time.perf_counter() - start, 1), ok, detail)


def run_soak(b: SoakBench) -> SoakResult:
    """Serve a copy of ``b.index`` and query it while it is updated; every request and update is recorded."""
    result = SoakResult(bench={k: str(v) for k, v in asdict(b).items()})
    ids = [json.loads(line)["id"] for line in (NEW_ITEMS / "captions.jsonl").read_text().splitlines()]
    with tempfile.TemporaryDirectory(prefix="relspace-soak-") as tmp:
        work = Path(tmp)
        index = work / "index"
        shutil.copytree(b.index, index)
        cfg = add_config(work)
        with server_process(index, b.startup_timeout) as (url, proc), \
                httpx.Client(base_url=url, timeout=b.request_timeout,
                             limits=httpx.Limits(max_connections=b.concurrency)) as client:
            images = [p.read_bytes() for p in sorted(NEW_ITEMS.glob("*.png"))]
            for hit in client.post("/search", json={"text": "a face", "k": 6}).json()["hits"]:
                if hit.get("thumbnail"):  # a few of the index's own images as queries too
                    images.append(client.get(hit["thumbnail"]).content)

            def query(i: int) -> tuple[str | None, int | None]:
                if i % b.image_every == 0:
                    res = client.post("/search", files={"image": ("q.png", images[i % len(images)], "image/png")},
                                      data={"k": str(b.k)})
                else:
                    res = client.post("/search", json={"text": QUERIES[i % len(QUERIES)], "k": b.k})
                if res.status_code != 200:
                    return f"HTTP {res.status_code}", None
                body = res.json()
                return (None, body.get("generation")) if "hits" in body else ("no hits field", None)

            g_start = client.get("/health").json()["generation"]
            t0 = time.perf_counter() + b.warmup  # the workers warm the server up until then, unrecorded
            end = t0 + b.minutes * 60.0
            lock = threading.Lock()
            counter = iter(range(b.max_requests))

            def worker() -> None:
                while time.perf_counter() < end:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    sent = time.perf_counter()
                    try:
                        error, generation = query(i)
                    except (httpx.HTTPError, ValueError) as e:
                        error, generation = type(e).__name__, None
                    sample = Sample(round(sent - t0, 3), (time.perf_counter() - sent) * 1000.0, error, generation)
                    if sent >= t0:
                        with lock:
                            result.samples.append(sample)

            def updater() -> None:  # add at 25% of each cycle, remove at 65% (or once the add is done)
                for cycle in range(int(b.minutes * 60.0 / b.update_every + 0.75)):
                    at = t0 + (cycle + 0.25) * b.update_every
                    time.sleep(max(0.0, at - time.perf_counter()))
                    timeout = max(b.update_every, 120.0)
                    result.updates.append(_cli("add", [str(index), str(cfg)], t0, timeout))
                    time.sleep(max(0.0, at + 0.4 * b.update_every - time.perf_counter()))
                    # always paired, even past the deadline, so the served copy ends as it began
                    result.updates.append(_cli("remove", [str(index), "--ids", *ids], t0, timeout))

            def sampler() -> None:  # the server's RSS after warm-up and at the end of every minute
                for n in range(0, int(b.minutes * 60.0 // BUCKET_S) + 1):
                    time.sleep(max(0.0, t0 + n * BUCKET_S - time.perf_counter()))
                    result.rss_mib.append((round(time.perf_counter() - t0, 1), rss_mib(proc.pid)))

            threads = [threading.Thread(target=worker) for _ in range(b.concurrency)]
            threads += [threading.Thread(target=updater), threading.Thread(target=sampler, daemon=True)]
            for t in threads:
                t.start()
            for t in threads[:-1]:
                t.join()
            result.wall_s = round(time.perf_counter() - t0, 1)
            result.rss_mib.append((result.wall_s, rss_mib(proc.pid)))
            deadline = time.monotonic() + 10  # the last remove's version reaches the server within its check period
            while (g_end := client.get("/health").json()["generation"]) < g_start + len(result.updates) and \
                    time.monotonic() < deadline:
                time.sleep(0.2)
            result.generations = (g_start, g_end)
    return result


def tables(b: SoakBench, result: SoakResult) -> list[Table]:
    """The per-minute table, with the RSS, update and spread figures as notes."""
    n_buckets = max(1, int(-(-min(b.minutes * 60.0, result.wall_s) // BUCKET_S)))
    rows = []
    for m in range(n_buckets):
        lo, hi = m * BUCKET_S, (m + 1) * BUCKET_S
        bucket = [s for s in result.samples if lo <= s.t < hi or (m == n_buckets - 1 and s.t >= hi)]
        ok = [s.ms for s in bucket if s.error is None]
        gens = sorted({s.generation for s in bucket if s.generation is not None})
        ups = [u for u in result.updates if lo <= u.t < hi]
        rss = [r for t, r in result.rss_mib if lo < t and (t <= hi + 1 or m == n_buckets - 1)] or [float("nan")]
        rows.append([m + 1, len(bucket), len(bucket) - len(ok), percentile(ok, 50), percentile(ok, 99),
                     ",".join(map(str, gens)), f"{sum(u.ok for u in ups)}/{len(ups)}", rss[-1]])
    start, last = result.rss_mib[0][1], result.rss_mib[-1][1]
    p99 = [r[4] for r in rows if r[4] == r[4]] or [float("nan")]
    errors = sum(s.error is not None for s in result.samples)
    kinds: dict[str, int] = {}
    for s in result.samples:
        if s.error:
            kinds[s.error] = kinds.get(s.error, 0) + 1
    failed = [u for u in result.updates if not u.ok]
    notes = [
        f"{len(result.samples)} requests in {result.wall_s:.0f} s, {errors} errors" + (f" {kinds}" if kinds else ""),
        f"server RSS after warm-up {start:.0f} MiB, at the end {last:.0f} MiB ({(last / start - 1) * 100:+.1f}%)"
        + (f"; from the end of minute 1 (which holds the first reload) {rows[0][7]:.0f} MiB: "
           f"{(last / rows[0][7] - 1) * 100:+.1f}%" if len(rows) > 1 else ""),
        f"p99 across minutes {min(p99):.0f}-{max(p99):.0f} ms (max/min {max(p99) / min(p99):.2f})",
        f"updates: {sum(u.ok for u in result.updates)} of {len(result.updates)} succeeded; each add or remove took "
        f"{fmt(min((u.seconds for u in result.updates), default=float('nan')))}-"
        f"{fmt(max((u.seconds for u in result.updates), default=float('nan')))} s (a new process loading the models)",
        *(f"failed {u.op} at {u.t} s: {u.detail}" for u in failed),
        f"server generation {result.generations[0]} at the start, {result.generations[1]} after the "
        f"{len(result.updates)} updates (no restart)",
        "generations: the index version of each answer; updates: add/remove runs that started in the minute (ok/all)",
        f"bench: {result.bench}",
    ]
    columns = ["minute", "requests", "errors", "p50 ms", "p99 ms", "generations", "updates", "server RSS MiB"]
    return [Table("soak", f"Soak: {b.minutes:g} min at concurrency {b.concurrency}, add + remove every "
                  f"{b.update_every:g} s", columns, rows, notes)]


def build_parser() -> argparse.ArgumentParser:
    d = SoakBench()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--index", type=Path, default=d.index, help="index to copy and serve (default indexes/openmoji)")
    p.add_argument("--minutes", type=float, default=d.minutes, help="how long to send queries (default 10)")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="client threads (default 16)")
    p.add_argument("--update-every", type=float, default=d.update_every, help="seconds per add+remove cycle")
    p.add_argument("-k", type=int, default=d.k, help="hits per search (default 10)")
    p.add_argument("--warmup", type=float, default=d.warmup, help="seconds of unrecorded queries first (default 30)")
    p.add_argument("--json", type=Path, default=None, help="also write the table and every update as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.minutes <= 120 or not 1 <= args.concurrency <= 256 or not args.update_every >= 1:
        raise SystemExit("soak: --minutes must be in (0, 120], --concurrency 1..256, --update-every >= 1")
    if not (args.index / "manifest.json").is_file():
        raise SystemExit(f"soak: {args.index} is not an index; build it with: relspace build configs/openmoji.yaml")
    b = SoakBench(index=args.index, minutes=args.minutes, concurrency=args.concurrency,
                  update_every=args.update_every, k=args.k, warmup=args.warmup)
    info = machine()
    result: SoakResult | None = None

    def go() -> list[Table]:
        nonlocal result
        result = run_soak(b)
        return tables(b, result)

    (table,) = timed_tables(go)
    assert result is not None
    print(f"`python -m benchmarks.soak {' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print(f"git {info['git']}; {machine_line(info)}\n")
    print(table.markdown())
    if args.json:
        args.json.write_text(json.dumps({"table": asdict(table), "updates": [asdict(u) for u in result.updates],
                                         "rss_mib": result.rss_mib,
                                         "generations": result.generations, "machine": info}, indent=2, default=str))
    errors = sum(s.error is not None for s in result.samples)
    caught_up = result.generations[1] - result.generations[0] == len(result.updates)
    return 1 if errors or not all(u.ok for u in result.updates) or not result.samples or not caught_up else 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(main())
