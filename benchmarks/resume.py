"""A real-image streaming build, SIGKILLed midway and resumed, against an uninterrupted build of the same data.

    python -m benchmarks.resume [--n 20000] [--shard-size 2000] [--out-dir /tmp/relspace-resume] [--kill-at 0.5]
                                [--seed 0] [--anchors 800] [--json results.json]

The images are OpenMoji with seeded augmentations (solid or gradient background, scale, rotation, colour
jitter), each keeping its emoji's English and Spanish captions, written as JPEG files plus a JSONL caption
file for the ``folder`` source. They are generated once per (N, seed) and reused while their manifest and
hashes match.

Three builds run as ``python -m pipeline build`` subprocesses of one YAML config:
- A, killed: SIGKILL (to its whole process group) once ``--kill-at`` of its shards are complete;
- A, resumed: the same command again, which keeps the finished shards and encodes the rest;
- B: ``--fresh`` into another directory, uninterrupted.
The embedding cache is deleted before each, so every build really encodes what it does not keep. Each run's
wall time, throughput and peak RSS (the build's process tree, sampled every 0.2 s from /proc) are reported,
then whether A equals B: ids in order, every shard's relative vectors, and the top-10 of 50 caption queries.
Build logs are kept as ``<out-dir>/<run>.log``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import ROOT, fmt, machine, machine_line

AUGMENT_VERSION = 1  # bump when the augmentation changes, so cached images are regenerated
SIDE = 160  # output image side (the OpenMoji render size)
LANGUAGES = ["en", "es"]
POLL = 0.2  # seconds between polls of the partial build and RSS samples


@dataclass
class ResumeBench:
    """A killed-and-resumed streaming build of ``n`` augmented OpenMoji images, against an uninterrupted one."""

    n: int = 20_000  # images to generate and index
    shard_size: int = 2_000  # items per build shard (config key shard_size)
    out_dir: str = "/tmp/relspace-resume"  # generated images, config, caches, both indexes and build logs
    kill_at: float = 0.5  # SIGKILL the first build once this fraction of its shards is complete
    seed: int = 0  # augmentation seed; image k uses the generator seeded with (seed, k)
    anchors: int = 800  # anchors.count (the default)
    queries: int = 50  # caption queries whose top-10 must agree
    k: int = 10  # hits per query compared


# -- data -------------------------------------------------------------------------------------------------


def background(rng: np.random.Generator) -> np.ndarray:
    """A SIDE x SIDE RGB background: a random solid colour, or a linear gradient between two at a random angle."""
    c0 = rng.integers(0, 256, 3).astype(np.float32)
    if rng.random() < 0.5:
        return np.broadcast_to(c0, (SIDE, SIDE, 3)).astype(np.uint8)
    c1 = rng.integers(0, 256, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / (SIDE - 1) - 0.5
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = (t - t.min()) / (t.max() - t.min())
    return (c0 + (c1 - c0) * t[..., None]).astype(np.uint8)


def cutout(png: bytes) -> Any:
    """The emoji as RGBA: the near-white surround (connected to the border) becomes transparent."""
    from PIL import Image, ImageFilter
    from scipy import ndimage

    img = Image.open(io.BytesIO(png)).convert("RGB")
    if img.size != (SIDE, SIDE):
        img = img.resize((SIDE, SIDE), Image.BICUBIC)
    labels, _ = ndimage.label(np.asarray(img).min(axis=-1) > 215)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, border[border > 0])  # white inside the outline (eyes, teeth) stays opaque
    alpha = Image.fromarray(np.where(outside, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    img.putalpha(alpha)
    return img


def augment(emoji: Any, rng: np.random.Generator) -> Any:
    """One augmented RGB image of an RGBA emoji: background, scale 0.6-1.0, rotation ±25°, colour jitter."""
    from PIL import Image, ImageEnhance

    canvas = Image.fromarray(background(rng))
    side = int(round(SIDE * rng.uniform(0.6, 1.0)))
    fg = emoji.resize((side, side), Image.BICUBIC).rotate(float(rng.uniform(-25, 25)), Image.BICUBIC, expand=True)
    slack = np.maximum(SIDE - np.array(fg.size), 0)
    x, y = (int(rng.integers(0, s + 1)) if s else 0 for s in slack)
    dx, dy = (max(0, (f - SIDE) // 2) for f in fg.size)  # a rotated full-size emoji is cropped about its centre
    canvas.paste(fg, (x - dx, y - dy), fg)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        canvas = enhance(canvas).enhance(float(rng.uniform(0.7, 1.3)))
    return canvas


def generate(n: int, seed: int, root: Path) -> dict[str, Any]:
    """Write ``n`` augmented images and their caption file under ``root``, or reuse them if they match.

    Image k is emoji ``k mod 1914`` of OpenMoji, replica ``k div 1914``, with id ``<emoji id>-<replica>``;
    its augmentation draws from ``numpy.random.default_rng((seed, k))`` only, so it is reproducible and
    independent of the order of generation.

    Returns:
        The data manifest: n, seed, augmentation version, hashes of the caption file and of all images,
        and the generation time (0 when reused).
    """
    from pipeline.config import load_config
    from pipeline.data import load_data

    images, captions, manifest_path = root / "images", root / "captions.jsonl", root / "manifest.json"
    want = {"n": n, "seed": seed, "augment_version": AUGMENT_VERSION, "side": SIDE}
    if manifest_path.is_file():
        found = json.loads(manifest_path.read_text())
        if ({k: found.get(k) for k in want} == want and captions.is_file()
                and _sha256_file(captions) == found.get("captions_sha256")
                and _hash_images(captions, images) == found.get("images_sha256")):
            print(f"reusing {n:,} generated images in {images}", file=sys.stderr)
            return {**found, "generate_s": 0.0}
    t0 = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    images.mkdir(parents=True)
    ds = load_data(load_config({"data": {"languages": LANGUAGES}}).data)
    src_ids, src_caps, pngs = ds["id"], ds["captions"], ds["image"]
    cutouts: dict[int, Any] = {}
    with open(captions.with_suffix(".tmp"), "w", encoding="utf-8") as fh:
        for k in range(n):
            i, replica = k % len(ds), k // len(ds)
            if i not in cutouts:
                cutouts[i] = cutout(pngs[i])
            name = f"{k:06d}.jpg"
            augment(cutouts[i], np.random.default_rng((seed, k))).save(images / name, quality=92)
            caps = src_caps[i]
            fh.write(json.dumps({"id": f"{src_ids[i]}-{replica}", "image": f"images/{name}", "caption": caps["en"],
                                 "caption_es": caps["es"]}, ensure_ascii=False) + "\n")
            if (k + 1) % 2000 == 0:
                print(f"generated {k + 1:,}/{n:,} images", file=sys.stderr)
    captions.with_suffix(".tmp").replace(captions)
    manifest = {**want, "captions_sha256": _sha256_file(captions), "images_sha256": _hash_images(captions, images)}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return {**manifest, "generate_s": time.perf_counter() - t0}


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hash_images(captions: Path, images: Path) -> str | None:
    """SHA-256 over every image the caption file names, in its order; None if one is missing."""
    h = hashlib.sha256()
    for line in captions.read_text(encoding="utf-8").splitlines():
        f = images.parent / json.loads(line)["image"]
        if not f.is_file():
            return None
        h.update(f.read_bytes())
    return h.hexdigest()


def write_config(b: ResumeBench, root: Path) -> Path:
    """The build config as YAML: folder source, en + es, default encoders, thumbnails off, a private cache."""
    import yaml

    from pipeline.config import load_config

    cfg = {
        "name": "resume",
        "text_encoder": "minilm",
        "image_encoder": "efficientnet-lite0",
        "shard_size": b.shard_size,
        "data": {"source": "folder", "path": str(root / "data"), "captions": str(root / "data" / "captions.jsonl"),
                 "languages": LANGUAGES, "cache_dir": str(root / "cache")},
        "anchors": {"count": b.anchors},
        "index": {"thumbnails": 0},
    }
    path = root / "resume.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    load_config(path)  # refused here, not three subprocesses later
    return path


# -- runs -------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One build subprocess, as measured."""

    name: str  # "A killed", "A resumed" or "B uninterrupted"
    wall_s: float = 0.0  # from start to exit (or to the kill)
    peak_rss_tree: int = 0  # bytes: the largest sampled sum of VmRSS over the build and its children
    peak_rss_main: int = 0  # bytes: the build process's own high-water mark (VmHWM), last sampled
    returncode: int | None = None
    killed_after: int | None = None  # complete shards when SIGKILL was sent
    kept: int = 0  # shards reused from the partial build ("complete, kept")
    encoded: int = 0  # shards encoded by this run
    rebuilt: int = 0  # shards found damaged or stale and rebuilt
    encode_rate: float = float("nan")  # items/s over the shards this run encoded, as the build logged it
    log: str = ""  # path of the build's log


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in bytes (empty if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in text.splitlines())
            if k in ("VmRSS", "VmHWM")}


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


SHARD_LINE = re.compile(r"shard (\d+)/(\d+): (complete, kept|\d+ items in [\d.]+ s \(([\d.]+) items/s\))")


def run_build(name: str, cmd: list[str], log: Path, *, kill_when: int | None = None,
              partial: Path | None = None) -> Run:
    """Run a build subprocess to the end, or SIGKILL it once ``kill_when`` shards are complete in ``partial``."""
    from pipeline.store.shards import list_shards

    run = Run(name, log=str(log))
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        while proc.poll() is None:
            rss = [_status(p) for p in _tree(proc.pid)]
            run.peak_rss_tree = max(run.peak_rss_tree, sum(s.get("VmRSS", 0) for s in rss))
            run.peak_rss_main = max(run.peak_rss_main, rss[0].get("VmHWM", 0) if rss else 0)
            if kill_when is not None and partial is not None:
                done = len(list_shards(partial / "shards"))
                if done >= kill_when:
                    os.killpg(proc.pid, signal.SIGKILL)  # the build and its DataLoader workers, as a crash would
                    proc.wait()
                    run.killed_after = len(list_shards(partial / "shards"))
                    break
            time.sleep(POLL)
    run.wall_s, run.returncode = time.perf_counter() - t0, proc.returncode
    text = log.read_text(errors="replace")
    for line in re.split(r"[\r\n]", text):
        m = SHARD_LINE.search(line)
        if m:
            if m.group(3).startswith("complete"):
                run.kept += 1
            else:
                run.encoded += 1
                run.encode_rate = float(m.group(4))  # the build logs the running mean over its encoded shards
    run.rebuilt = text.count("; rebuilding it")
    if kill_when is None and run.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {run.returncode}); see {log}:\n{text[-3000:]}")
    return run


# -- equality ---------------------------------------------------------------------------------------------


def compare(a: Path, b: Path, queries: list[str], k: int) -> dict[str, Any]:
    """Ids (in order) and vectors of both item tables, and the top-k ids of each caption query, of A and B."""
    import pyarrow.parquet as pq

    from pipeline import Retriever
    from pipeline.store.shards import open_shards

    out: dict[str, Any] = {}
    for m in ("image", "text"):
        ta, tb = (pq.read_table(d / f"{m}_items.parquet") for d in (a, b))
        out[f"{m}_rows"] = ta.num_rows
        out[f"{m}_ids_equal"] = ta.column("id").to_pylist() == tb.column("id").to_pylist()
    sa, sb = open_shards(a), open_shards(b)
    out["shards"] = (len(sa), len(sb))
    for m in ("image", "text"):
        va = np.vstack([np.asarray(s.vectors(m)) for s in sa])
        vb = np.vstack([np.asarray(s.vectors(m)) for s in sb])
        out[f"{m}_shape"] = (va.shape, vb.shape)
        out[f"{m}_max_diff"] = float(np.abs(va - vb).max()) if va.shape == vb.shape else float("inf")
    ra, rb = Retriever.load(a), Retriever.load(b)
    same, score_diff = 0, 0.0
    for q in queries:
        ha, hb = ra.search(q, k=k), rb.search(q, k=k)
        same += [h.id for h in ha] == [h.id for h in hb]
        score_diff = max([score_diff, *(abs(x.score - y.score) for x, y in zip(ha, hb))])
    out["queries"], out["queries_equal"], out["score_max_diff"] = len(queries), same, score_diff
    out["equal"] = bool(out["image_ids_equal"] and out["text_ids_equal"] and out["shards"][0] == out["shards"][1]
                        and max(out["image_max_diff"], out["text_max_diff"]) <= 1e-5 and same == len(queries))
    return out


def pick_queries(captions: Path, n: int, seed: int) -> list[str]:
    """``n`` distinct captions, English and Spanish alternately, drawn with a seeded generator."""
    rows = [json.loads(line) for line in captions.read_text(encoding="utf-8").splitlines()]
    pool = sorted({r["caption"] for r in rows}), sorted({r["caption_es"] for r in rows})
    rng = np.random.default_rng(seed)
    picks = [rng.choice(pool[0], (n + 1) // 2, replace=False), rng.choice(pool[1], n // 2, replace=False)]
    return [str(q) for pair in zip(*picks) for q in pair] + [str(q) for q in picks[0][len(picks[1]):]]


# -- main -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.resume", description=__doc__.split("\n\n")[0])
    d = ResumeBench()
    p.add_argument("--n", type=int, default=d.n, help="images to generate and index")
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="items per build shard")
    p.add_argument("--out-dir", default=d.out_dir, help="images, config, caches, indexes and build logs")
    p.add_argument("--kill-at", type=float, default=d.kill_at, help="fraction of shards complete at the SIGKILL")
    p.add_argument("--seed", type=int, default=d.seed, help="augmentation seed")
    p.add_argument("--anchors", type=int, default=d.anchors, help="anchors.count (fewer only for smoke runs)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    b = ResumeBench(n=args.n, shard_size=args.shard_size, out_dir=args.out_dir, kill_at=args.kill_at, seed=args.seed,
                    anchors=args.anchors)
    if not 0 < b.kill_at < 1:
        p.error("--kill-at must be between 0 and 1")
    count = math.ceil(b.n / b.shard_size)
    kill_when = min(count - 1, max(1, math.ceil(b.kill_at * count)))
    if count < 2:
        p.error(f"{b.n} items in shards of {b.shard_size} is one shard: nothing to resume")

    from pipeline.store.layout import partial_dir

    command = "python -m benchmarks.resume " + shlex.join(sys.argv[1:] if argv is None else argv)
    info = machine()
    header = [f"command: `{command}`", f"git: {info['git']}", machine_line(info),
              f"started {time.strftime('%Y-%m-%d %H:%M:%S')}"]
    print("\n".join(f"- {h}" for h in header), flush=True)
    root = Path(b.out_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    data = generate(b.n, b.seed, root / "data")
    config = write_config(b, root)
    out_a, out_b = root / "index-a", root / "index-b"
    build = [sys.executable, "-m", "pipeline", "build", str(config), "--out"]
    embeddings = root / "cache" / "embeddings"

    def fresh_cache() -> None:  # no run may reuse another's embeddings; the dataset cache (hf/) is kept
        shutil.rmtree(embeddings, ignore_errors=True)

    loads = [os.getloadavg()[0]]
    fresh_cache()
    killed = run_build("A killed", [*build, str(out_a), "--fresh"], root / "a-killed.log",
                       kill_when=kill_when, partial=partial_dir(out_a))
    if killed.returncode == 0:
        raise RuntimeError(f"build A finished before {kill_when} of {count} shards were complete; "
                           f"see {killed.log}")
    loads.append(os.getloadavg()[0])
    fresh_cache()
    resumed = run_build("A resumed", [*build, str(out_a)], root / "a-resumed.log")
    loads.append(os.getloadavg()[0])
    fresh_cache()
    whole = run_build("B uninterrupted", [*build, str(out_b), "--fresh"], root / "b.log")
    loads.append(os.getloadavg()[0])
    eq = compare(out_a, out_b, pick_queries(root / "data" / "captions.jsonl", ResumeBench.queries, b.seed), b.k)

    gib = 1024 ** 3
    rows = []
    for r in (killed, resumed, whole):
        done = r.killed_after if r.name == "A killed" else r.kept + r.encoded
        items = b.n if r.name == "B uninterrupted" else None
        rows.append([f"{b.n:,}", f"{b.shard_size:,}", r.name, round(r.wall_s, 1),
                     b.n / r.wall_s if items else float("nan"), r.encode_rate,
                     r.peak_rss_tree / gib, r.peak_rss_main / gib,
                     f"{r.kept} / {r.encoded}" + (f" ({r.rebuilt} rebuilt)" if r.rebuilt else ""),
                     f"{done}/{count}" + (" at SIGKILL" if r.name == "A killed" else "")])
    total_a = killed.wall_s + resumed.wall_s
    lines = [
        "", "### Killed, resumed and uninterrupted streaming builds", "",
        "| N | shard size | run | wall s | images/s (end to end) | images/s (encoded shards, as logged) | "
        "peak RSS GiB (process tree) | peak RSS GiB (build process) | shards kept / encoded | shards done |",
        "|" + "---|" * 10,
        *("| " + " | ".join(fmt(c) for c in row) + " |" for row in rows),
        "",
        f"- A in all (killed + resumed): {total_a:.1f} s against B's {whole.wall_s:.1f} s "
        f"({total_a / whole.wall_s:.2f}x); the resumed run encoded {resumed.encoded} of {count} shards.",
        f"- ids: image {'equal' if eq['image_ids_equal'] else 'DIFFERENT'} ({eq['image_rows']:,} rows), "
        f"text {'equal' if eq['text_ids_equal'] else 'DIFFERENT'} ({eq['text_rows']:,} rows), in order; "
        f"shards {eq['shards'][0]} vs {eq['shards'][1]}.",
        f"- relative vectors, max |A - B|: image {eq['image_max_diff']:.3g}, text {eq['text_max_diff']:.3g} "
        f"(bound 1e-5).",
        f"- top-{b.k} ids identical for {eq['queries_equal']}/{eq['queries']} caption queries (en and es); "
        f"max score difference {eq['score_max_diff']:.3g}.",
        f"- **A equals B: {'yes' if eq['equal'] else 'NO'}**",
        f"- data: {b.n:,} augmented OpenMoji JPEGs (seed {b.seed}, "
        + (f"generated in {data['generate_s']:.0f} s" if data["generate_s"] else "reused") +
        f"), {root / 'data'}; config {config}; build logs {root}/*.log.",
        f"- peak RSS: the build's own is its VmHWM; the tree figure sums VmRSS over it and its DataLoader "
        f"workers every {POLL} s, counting pages they share more than once.",
        "- load average (1 min) before A, after A killed, after A resumed, after B: "
        + " -> ".join(f"{x:.2f}" for x in loads),
        f"- finished {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "", "```", repr(b), "```",
    ]
    print("\n".join(lines), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"command": command, "machine": info, "bench": asdict(b), "data": data, "load": loads,
             "runs": [asdict(r) for r in (killed, resumed, whole)], "equality": eq}, indent=1, default=str))
    return 0 if eq["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
