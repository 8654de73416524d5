"""A million-item index on one machine: streaming build, automatic index choice, and serving, with peak RSS.

    python -m benchmarks.scale                       # 1,000,000 items, 1,024 anchors, auto under 4G
    python -m benchmarks.scale --n 100000 --out /tmp/relspace-scale --json scale.json

Synthetic items with cross-modal structure go through the library's own shard writer, index builder and
atomic publish (the streaming path a real build uses, minus the encoders, which the image benchmark covers):
each item belongs to one of ``clusters`` concepts, seen through an "image" space (1,280-d) and a "text"
space (384-d) that are unrelated linear views of the concept plus noise. Anchors are 1,024 paired items;
each space's relative vectors come from the default projector fitted on its own anchors. Text queries of
held-out items search the image index (cross-modal, as ``auto`` tunes and as users query).

Each phase runs in its own process, so that its peak RSS (``ru_maxrss``) is its own:
``build`` (shards, index choice, publish), ``serve`` (``Retriever.load`` plus 1,000 single queries on one
thread) and ``candidates`` (every candidate of the automatic choice, measured the same way).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .common import machine, machine_line

REPO = Path(__file__).resolve().parent.parent


@dataclass
class ScaleBench:
    n: int = 1_000_000  # items in the image index
    anchors: int = 1_024  # anchors: the relative dimension m
    captions_every: int = 20  # one caption per this many items goes into the text index
    clusters: int = 1_000  # concepts the items are drawn from (as in the index section)
    d_image: int = 1_280  # absolute image dimension (EfficientNet-Lite0)
    d_text: int = 384  # absolute text dimension (MiniLM)
    noise: float = 1.0  # per-item noise around its concept, relative to unit concept spread
    shard_size: int = 50_000  # items per shard
    queries: int = 1_000  # single text queries against the image index
    max_memory: str = "4G"  # the auto budget
    max_query_ms: float = 20.0  # the auto latency budget
    train_size: int = 100_000  # at most this many vectors train an IVF or PQ candidate
    seed: int = 0


class World:
    """Concepts seen through two unrelated linear views; items and anchors are drawn from it reproducibly."""

    def __init__(self, b: ScaleBench):
        rng = np.random.default_rng(b.seed)
        self.b = b
        concept = rng.standard_normal((b.clusters, 64)).astype(np.float32)
        self.image_centres = concept @ rng.standard_normal((64, b.d_image)).astype(np.float32) / 8
        self.text_centres = concept @ rng.standard_normal((64, b.d_text)).astype(np.float32) / 8

    def draw(self, modality: str, concepts: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        centres = self.image_centres if modality == "image" else self.text_centres
        noise = rng.standard_normal((len(concepts), centres.shape[1]), dtype=np.float32) * self.b.noise
        return centres[concepts] + noise

    def concepts(self, n: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).integers(self.b.clusters, size=n)


def _projectors(world: World) -> dict:
    from pipeline.core.spaces import IMAGE, SpaceKey
    from pipeline.space.relative import RelativeProjector

    concepts = world.concepts(world.b.anchors, seed=1)
    return {IMAGE: RelativeProjector().fit(world.draw("image", concepts, seed=2)),
            SpaceKey.text("en"): RelativeProjector().fit(world.draw("text", concepts, seed=3))}


def phase_build(b: ScaleBench, out: Path) -> dict:
    """Shards through the library's writer, index choice through its builder, then the atomic publish."""
    import pyarrow as pa

    from pipeline.config import Config, IndexConfig
    from pipeline.core.hashing import hash_arrays
    from pipeline.core.spaces import IMAGE, SpaceKey
    from pipeline.encoders import EncoderInfo
    from pipeline.indexing.commit import build_indexes, publish
    from pipeline.indexing.engines import make_engine
    from pipeline.space.projectors import save_projectors
    from pipeline.store.layout import shard_name
    from pipeline.store.manifest import Manifest
    from pipeline.store.records import AnchorRecord, AutoChoice, Counts, FaissRecord, read_record
    from pipeline.store.shards import ShardError, ShardPayload, read_shard, write_shard

    world = World(b)
    projectors = _projectors(world)
    work = out.parent / f".{out.name}.shards"
    work.mkdir(parents=True, exist_ok=True)
    # Shards of the same synthetic data are kept from an earlier run, as a resumed build keeps them.
    data = {k: v for k, v in asdict(b).items() if k not in ("max_memory", "max_query_ms", "train_size", "queries")}
    source = "synthetic-" + hash_arrays(json.dumps(data, sort_keys=True))[:16]
    t0 = time.perf_counter()
    shards, reused = [], 0
    for s, start in enumerate(range(0, b.n, b.shard_size)):
        end = min(b.n, start + b.shard_size)
        try:
            shards.append(read_shard(work / shard_name(s), source=source, anchors="synthetic", rows=(start, end)))
            reused += 1
            continue
        except ShardError:
            pass
        concepts = world.concepts(end - start, seed=100 + s)
        ids = [f"item-{i}" for i in range(start, end)]
        take = np.arange(0, end - start, b.captions_every)
        payload = ShardPayload(
            vectors={"image": projectors[IMAGE].transform(world.draw("image", concepts, seed=10_000 + s)),
                     "text": projectors[SpaceKey.text("en")].transform(
                         world.draw("text", concepts[take], seed=20_000 + s))},
            items={"image": pa.table({"id": ids, "concept": concepts}),
                   "text": pa.table({"id": [ids[i] for i in take], "lang": ["en"] * len(take),
                                     "caption": [f"concept {c}" for c in concepts[take]]})})
        shards.append(write_shard(work, s, payload, rows=(start, end), source=source, anchors="synthetic"))
    t_shards = time.perf_counter() - t0
    index_cfg = IndexConfig(factory="auto", max_memory=b.max_memory, max_query_ms=b.max_query_ms,
                            train_size=b.train_size)
    t0 = time.perf_counter()
    indexes, records = build_indexes(shards, index_cfg, b.seed, engine=make_engine())
    t_index = time.perf_counter() - t0
    cfg = Config(index=index_cfg)
    info = EncoderInfo(spec="synthetic", version="1", modality="image", dim=b.d_image)
    manifest = Manifest(encoders={IMAGE: info, SpaceKey("text"): replace(info, modality="text", dim=b.d_text)},
                        anchors=AnchorRecord(hash="synthetic", count=b.anchors, spaces=list(projectors)),
                        projector=cfg.projector,
                        faiss=FaissRecord(factory="auto", auto={m: read_record(AutoChoice, r, "auto record")
                                                                for m, r in records.items()}),
                        counts=Counts(), package_version="bench", config=cfg)
    t0 = time.perf_counter()
    publish(out, shards, indexes, manifest, ["en"],
            lambda tmp: save_projectors(tmp / "projector.safetensors", projectors))
    t_publish = time.perf_counter() - t0
    queries = projectors[SpaceKey.text("en")].transform(
        world.draw("text", world.concepts(b.queries, seed=7), seed=8))
    np.save(out.parent / f"{out.name}.queries.npy", queries)
    return {"shards_s": t_shards, "shards_reused": reused, "index_s": t_index, "publish_s": t_publish, "auto": records,
            "disk_bytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file())}


def phase_serve(b: ScaleBench, out: Path) -> dict:
    """A fresh ``Retriever.load`` and single queries through ``search_vectors`` (hits with metadata), one thread."""
    import faiss

    from pipeline import Retriever

    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    r = Retriever.load(out)
    load_s = time.perf_counter() - t0
    queries = np.load(out.parent / f"{out.name}.queries.npy")
    times = []
    for q in queries:
        t = time.perf_counter()
        r.search_vectors(q[None], 10, target="image")
        times.append((time.perf_counter() - t) * 1e3)
    return {"load_s": load_s, "p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def phase_candidates(b: ScaleBench, out: Path) -> dict:
    """Every candidate of the automatic choice on the published shards, measured as the chooser measures."""
    from pipeline.ann.auto import IndexBudget, evaluate_candidates
    from pipeline.config import IndexConfig
    from pipeline.store.shards import open_shards

    shards = open_shards(out)
    queries = np.load(out.parent / f"{out.name}.queries.npy")
    budget = IndexBudget.from_config(IndexConfig(factory="auto", max_memory=b.max_memory,
                                                 max_query_ms=b.max_query_ms))
    return {"candidates": evaluate_candidates([s.vectors("image") for s in shards], queries, budget, seed=b.seed)}


PHASES = {"build": phase_build, "serve": phase_serve, "candidates": phase_candidates}


def _child(phase: str, b: ScaleBench, out: Path) -> None:
    result = PHASES[phase](b, out)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(result, default=float))


def run_phase(phase: str, b: ScaleBench, out: Path) -> dict:
    """Run one phase in a fresh interpreter and return what it measured (its own peak RSS included)."""
    cmd = [sys.executable, "-m", "benchmarks.scale", "--phase", phase, "--out", str(out),
           "--bench", json.dumps(asdict(b))]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode:
        raise RuntimeError(f"phase {phase} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return {**json.loads(line[7:]), "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=ScaleBench.n)
    p.add_argument("--out", type=Path, default=Path("/tmp/relspace-scale/index"))
    p.add_argument("--max-memory", default=ScaleBench.max_memory)
    p.add_argument("--skip-candidates", action="store_true", help="do not measure every candidate")
    p.add_argument("--reuse-build", action="store_true",
                   help="serve (and candidates) on the index an earlier run of the same command built, "
                        "reporting that run's build figures (kept in OUT.build.json)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    p.add_argument("--bench", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        _child(args.phase, ScaleBench(**json.loads(args.bench)), args.out)
        return 0
    b = ScaleBench(n=args.n, max_memory=args.max_memory)
    print(f"`python -m benchmarks.scale {' '.join(sys.argv[1:])}`\n\n{machine_line(machine())}\n\n{b}\n")
    saved = args.out.parent / f"{args.out.name}.build.json"
    if args.reuse_build and saved.is_file() and json.loads(saved.read_text())["bench"] == asdict(b):
        build = json.loads(saved.read_text())["build"]
    else:
        build = run_phase("build", b, args.out)
        saved.write_text(json.dumps({"bench": asdict(b), "build": build}, default=float))
    results = {"bench": asdict(b), "build": build, "serve": run_phase("serve", b, args.out)}
    if not args.skip_candidates:
        results["candidates"] = run_phase("candidates", b, args.out)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


def report(res: dict) -> str:
    build, serve, chosen = res["build"], res["serve"], res["build"]["auto"]["image"]
    lines = [
        "| phase | wall s | peak RSS GiB | figures |", "|---|---|---|---|",
        f"| build | {build['wall_s']:.0f} | {build['peak_rss_gib']:.2f} | shards {build['shards_s']:.0f} s "
        f"({build['shards_reused']} reused), index "
        f"{build['index_s']:.0f} s, publish {build['publish_s']:.0f} s, "
        f"on disk {build['disk_bytes'] / 2**30:.2f} GiB |",
        f"| serve | {serve['wall_s']:.0f} | {serve['peak_rss_gib']:.2f} | load {serve['load_s']:.2f} s, "
        f"p50 {serve['p50_ms']:.2f} ms, p99 {serve['p99_ms']:.2f} ms (single queries, 1 thread, hits included) |",
        "", f"chosen image index: `{chosen['key']}` {chosen.get('params', {})}", "",
        "| candidate | params | build s | bytes | p50 ms | p99 ms | recall@10 | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in res.get("candidates", {}).get("candidates", chosen.get("candidates", [])):
        lines.append(f"| `{c['key']}` | {c.get('params', '')} | {_f(c.get('build_s'))} | {_f(c.get('bytes'), 0)} | "
                     f"{_f(c.get('p50_ms'))} | {_f(c.get('p99_ms'))} | {_f(c.get('recall_at_10'), 3)} | "
                     f"{c.get('reason', '')} |")
    return "\n".join(lines)


def _f(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
