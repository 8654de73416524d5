"""Bounded loopback load test of ``POST /search``: latency percentiles, throughput and errors.

Starts ``relspace serve INDEX`` on a free loopback port in a subprocess (so the client threads do not share
the server's GIL), or targets a running server with ``--url``. Sends a fixed number of text queries from a
fixed number of threads, stops at a deadline whatever happens, and prints one summary.

    python -m benchmarks.load_test --index /tmp/serve-idx --requests 500 --concurrency 8
    python -m benchmarks.load_test --url http://127.0.0.1:8000 --requests 200 --json

Only loopback addresses are accepted: this is a local benchmark, not a tool for loading other machines.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .common import ROOT, percentile

# Varied short queries, cycled: repeated texts are fine, the server has no result cache.
QUERIES = [
    "a red apple", "vehicle", "food", "a face", "an animal", "a flag", "heart", "weather", "sports ball",
    "a happy smiling face", "crying", "a cat", "a dog", "bird", "fish in the sea", "a tree", "flower",
    "the sun", "rain and clouds", "snow", "fire", "a car", "train", "airplane", "boat", "bicycle", "house",
    "music", "a guitar", "book", "money", "clock", "phone", "computer", "a key", "hammer and tools",
    "medicine", "doctor", "police officer", "a family", "baby", "king and queen", "ghost", "alien", "robot",
    "pizza", "coffee", "beer", "cake", "fruit",
]


@dataclass
class Result:
    """What one run measured; latencies are client-side, from send to parsed response."""

    url: str
    requests: int  # requests attempted
    concurrency: int
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)  # e.g. {"HTTP 503": 2, "ReadTimeout": 1}
    wall_s: float = 0.0
    throughput_rps: float = 0.0  # successful requests per second of wall time
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, max, mean
    server_took_ms: dict[str, float] = field(default_factory=dict)  # the server's own took_ms: p50, p99
    stopped_by_deadline: bool = False


def _summary(values: list[float], qs: Sequence[int]) -> dict[str, float]:
    out = {f"p{q}": round(percentile(values, q), 2) for q in qs}
    if values:
        out["max"] = round(max(values), 2)
        out["mean"] = round(sum(values) / len(values), 2)
    return out


def _require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"load_test: refusing {url}: only loopback servers (127.0.0.1, ::1, localhost) are allowed")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(index: Path, startup_timeout: float) -> Iterator[str]:
    """Run ``python -m pipeline serve`` on a free loopback port until the block ends."""
    with server_process(index, startup_timeout) as (url, _):
        yield url


@contextmanager
def server_process(
    index: Path, startup_timeout: float, args: Sequence[str] = ()
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m pipeline -q serve INDEX`` (plus ``args``) on a free loopback port: its URL and process.

    The server imports this checkout's ``pipeline`` (PYTHONPATH), whatever is installed, and is stopped
    when the block ends.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "pipeline", "-q", "serve", str(index), "--host", "127.0.0.1", "--port", str(port),
           *args]
    proc = subprocess.Popen(cmd, env=checkout_env())
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"load_test: the server exited with code {proc.returncode} before it was ready")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"load_test: the server was not ready after {startup_timeout:.0f} s")
            time.sleep(0.25)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def checkout_env() -> dict[str, str]:
    """The environment for a ``python -m pipeline`` child: this checkout first on its path, no progress bars."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TQDM_DISABLE": "1"}


def run_load(url: str, *, requests: int, concurrency: int, k: int, deadline_s: float, request_timeout: float,
             warmup: int) -> Result:
    """Send ``requests`` text searches from ``concurrency`` threads; stop early at ``deadline_s``."""
    result = Result(url=url, requests=requests, concurrency=concurrency)
    latencies: list[float] = []
    took: list[float] = []
    kinds: Counter[str] = Counter()
    lock = threading.Lock()
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    with httpx.Client(base_url=url, timeout=request_timeout, limits=limits) as client:
        for i in range(warmup):  # first calls pay for lazy loading; keep them out of the figures
            client.post("/search", json={"text": QUERIES[i % len(QUERIES)], "k": k})

        start = time.perf_counter()
        stop_at = start + deadline_s

        def worker() -> None:
            nonlocal next_index
            while True:
                with lock:
                    if next_index >= requests:
                        return
                    if time.perf_counter() > stop_at:
                        result.stopped_by_deadline = True
                        return
                    i = next_index
                    next_index += 1
                t0 = time.perf_counter()
                try:
                    res = client.post("/search", json={"text": QUERIES[i % len(QUERIES)], "k": k})
                    body = res.json() if res.status_code == 200 else None
                    error = None if body is not None and "hits" in body else f"HTTP {res.status_code}"
                except (httpx.HTTPError, ValueError) as e:
                    body, error = None, type(e).__name__
                elapsed = (time.perf_counter() - t0) * 1000.0
                with lock:
                    if error is None:
                        latencies.append(elapsed)
                        took.append(float(body["took_ms"]))
                    else:
                        kinds[error] += 1

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for f in [pool.submit(worker) for _ in range(concurrency)]:
                f.result()
        result.wall_s = round(time.perf_counter() - start, 3)

    result.ok = len(latencies)
    result.errors = sum(kinds.values()) + (requests - next_index)  # requests never sent count as failures
    if requests > next_index:
        kinds["not sent (deadline)"] += requests - next_index
    result.error_kinds = dict(kinds)
    result.throughput_rps = round(result.ok / result.wall_s, 2) if result.wall_s else 0.0
    result.latency_ms = _summary(latencies, (50, 90, 99))
    result.server_took_ms = _summary(took, (50, 99))
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", type=Path, help="index directory: start a local server on it")
    where.add_argument("--url", help="a running server on loopback, e.g. http://127.0.0.1:8000")
    p.add_argument("--requests", type=int, default=500, help="number of requests (default 500)")
    p.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    p.add_argument("-k", type=int, default=10, help="hits per search (default 10)")
    p.add_argument("--deadline", type=float, default=300.0, help="stop sending after this many seconds")
    p.add_argument("--request-timeout", type=float, default=30.0, help="per-request timeout in seconds")
    p.add_argument("--warmup", type=int, default=8, help="uncounted requests before measuring")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for a started server")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 256:
        raise SystemExit("load_test: --requests must be 1..100000 and --concurrency 1..256")

    def go(url: str) -> Result:
        _require_loopback(url)
        return run_load(url, requests=args.requests, concurrency=args.concurrency, k=args.k,
                        deadline_s=args.deadline, request_timeout=args.request_timeout, warmup=args.warmup)

    if args.url:
        result = go(args.url.rstrip("/"))
    else:
        with local_server(args.index, args.startup_timeout) as url:
            result = go(url)

    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        lat, srv = result.latency_ms, result.server_took_ms
        print(f"target       {result.url}  ({os.cpu_count()} CPUs here)")
        print(f"requests     {result.requests} at concurrency {result.concurrency}, k={args.k}")
        print(f"ok / errors  {result.ok} / {result.errors}" + (f"  {result.error_kinds}" if result.errors else ""))
        stopped = "  (stopped by the deadline)" if result.stopped_by_deadline else ""
        print(f"wall time    {result.wall_s:.2f} s{stopped}")
        print(f"throughput   {result.throughput_rps:.1f} req/s")
        print(f"latency ms   p50 {lat.get('p50')}  p90 {lat.get('p90')}  p99 {lat.get('p99')}  "
              f"max {lat.get('max')}  mean {lat.get('mean')}")
        print(f"server ms    p50 {srv.get('p50')}  p99 {srv.get('p99')}  "
              "(its took_ms: encoder-lock wait + encode + search)")
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
