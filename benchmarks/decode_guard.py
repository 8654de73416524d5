"""The server's memory under images of extreme shape: peak RSS while it handles each, against its idle RSS.

A 370-byte 100000x1 PNG once grew ``relspace serve`` to ~20 GB (the encoder's resize made it 16,000,000x160);
the image rule (pipeline.data.images.check_size) refuses it from the header. This starts ``python -m pipeline
serve INDEX`` on a free loopback port (a subprocess), warms it with a text and a normal image query, reads its
idle VmRSS, then posts each image while a thread samples /proc/PID/status every 2 ms, and prints per image the
status, the peak sampled RSS and the growth of VmHWM over idle. Target: within 100 MB of idle.

    python -m benchmarks.decode_guard --index /path/to/small/index
    python -m benchmarks.decode_guard --index indexes/openmoji --json out.json

Only loopback is used: the server is started here and bound to 127.0.0.1; each image is posted ``--repeats`` times.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from PIL import Image

from .common import ROOT, Table, machine, machine_line, timed_tables
from .load_test import server_process

MiB = 1024 * 1024
TARGET_MIB = 100.0  # the bound the issue set: within 100 MB of idle


@dataclass
class DecodeGuardBench:
    """One run: which images, how often each."""

    index: Path = ROOT / "indexes" / "openmoji"  # the index to serve (relspace build configs/openmoji.yaml)
    # width x height of each real (decodable) PNG posted; 160x160 is a normal emoji, for reference
    shapes: tuple[tuple[int, int], ...] = ((160, 160), (100_000, 1), (1, 100_000), (30_000, 2), (4000, 1),
                                           (2000, 1), (50, 1), (51, 1))
    repeats: int = 3  # posts of each image
    startup_timeout: float = 300.0  # seconds to wait for the server to answer /health
    sample_s: float = 0.002  # RSS sampling period during a request


@dataclass
class Row:
    """One image's result."""

    shape: str
    bytes: int  # size of the PNG posted
    status: int  # HTTP status of the last post
    detail: str  # the error detail, or the number of hits
    peak_rss_mib: float  # highest sampled VmRSS during its posts
    over_idle_mib: float  # that peak minus the idle VmRSS
    hwm_growth_mib: float  # VmHWM after its posts minus VmHWM at idle


@dataclass
class Result:
    idle_rss_mib: float = 0.0
    idle_hwm_mib: float = 0.0
    rows: list[Row] = field(default_factory=list)


def status_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MiB, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def sample_peak(pid: int, peak: list[float], stop: threading.Event, period: float) -> None:
    """Keep the highest VmRSS of ``pid`` in ``peak[0]`` until ``stop`` is set."""
    while not stop.is_set():
        peak[0] = max(peak[0], status_mib(pid)["VmRSS"])
        time.sleep(period)


def png(width: int, height: int) -> bytes:
    """A real, decodable greyscale PNG of that size (100000x1 compresses to a few hundred bytes)."""
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def run(b: DecodeGuardBench) -> Result:
    result = Result()
    with server_process(b.index, b.startup_timeout) as (url, proc), httpx.Client(base_url=url, timeout=120) as c:
        c.post("/search", json={"text": "a red apple", "k": 3}).raise_for_status()
        c.post("/search", files={"image": ("q.png", png(160, 160))}).raise_for_status()
        time.sleep(1.0)
        idle = status_mib(proc.pid)
        result.idle_rss_mib, result.idle_hwm_mib = idle["VmRSS"], idle["VmHWM"]
        for w, h in b.shapes:
            data = png(w, h)
            peak, stop = [0.0], threading.Event()
            sampler = threading.Thread(target=sample_peak, args=(proc.pid, peak, stop, b.sample_s), daemon=True)
            sampler.start()
            for _ in range(b.repeats):
                res = c.post("/search", files={"image": (f"{w}x{h}.png", data)})
            stop.set()
            sampler.join()
            body = res.json()
            detail = f"{len(body['hits'])} hits" if res.status_code == 200 else body["detail"]
            after = status_mib(proc.pid)
            result.rows.append(Row(f"{w}x{h}", len(data), res.status_code, detail, round(peak[0], 1),
                                   round(peak[0] - result.idle_rss_mib, 1),
                                   round(after["VmHWM"] - result.idle_hwm_mib, 1)))
    return result


def tables(b: DecodeGuardBench, r: Result) -> list[Table]:
    rows = [[x.shape, x.bytes, x.status, x.peak_rss_mib, x.over_idle_mib, x.hwm_growth_mib, x.detail[:70]]
            for x in r.rows]
    worst = max((x.over_idle_mib for x in r.rows), default=0.0)
    notes = [f"idle VmRSS {r.idle_rss_mib:.0f} MiB, VmHWM {r.idle_hwm_mib:.0f} MiB (after a text and an image query)",
             f"worst peak over idle {worst:.1f} MiB; target {TARGET_MIB:.0f} MB: "
             f"{'met' if worst * MiB <= TARGET_MIB * 1e6 else 'NOT met'}",
             f"each image posted {b.repeats} times; RSS sampled every {b.sample_s * 1000:g} ms from /proc/PID/status"]
    columns = ["image", "PNG bytes", "status", "peak RSS MiB", "over idle MiB", "VmHWM growth MiB", "detail"]
    return [Table("decode_guard", "Server memory under extreme image shapes", columns, rows, notes)]


def build_parser() -> argparse.ArgumentParser:
    d = DecodeGuardBench()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--index", type=Path, default=d.index, help="index to serve (default indexes/openmoji)")
    p.add_argument("--repeats", type=int, default=d.repeats, help="posts of each image (default 3)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.index / "manifest.json").is_file():
        raise SystemExit(f"decode_guard: {args.index} is not an index; build it with: relspace build CONFIG")
    if not 1 <= args.repeats <= 20:
        raise SystemExit("decode_guard: --repeats must be 1..20")
    b = DecodeGuardBench(index=args.index, repeats=args.repeats)
    info = machine()
    result = Result()

    def go() -> list[Table]:
        nonlocal result
        result = run(b)
        return tables(b, result)

    out = timed_tables(go)
    print(machine_line(info))
    for t in out:
        print(t.markdown())
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "bench": {**asdict(b), "index": str(b.index)},
                                         "result": asdict(result)}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(main())
