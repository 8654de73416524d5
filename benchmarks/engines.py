"""The Ray engine against the local one: the same build, side by side, on this machine.

    python -m benchmarks.engines [--config configs/openmoji.yaml] [--shard-size 256] [--rounds 1]
                                 [--factory Flat] [--num-actors N] [--out-dir /tmp/relspace-engines] [--json PATH]

Each round builds the config once per engine, in alternating order (local, ray; then ray, local), with the
embedding cache emptied before every build so that both really encode every item. The Ray cluster is
started (``ray.init``, all local cores) before the first timed build and its start-up time is reported on
its own line: a cluster is started once and then serves many builds. Reports each build's wall time and
the ratio ray / local per round, and checks that the two indexes hold the same ids and vectors.

On one machine Ray cannot be faster than the local engine, which already uses every core: the ratio is its
overhead (actor start-up, a model per actor, scheduling), which is the figure to know before using a cluster.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .common import ROOT, machine, machine_line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.engines", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "openmoji.yaml"))
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--factory", default="Flat")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--num-actors", type=int, default=None, help="Ray actors (default: one per core)")
    p.add_argument("--out-dir", default="/tmp/relspace-engines")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import ray

    from pipeline import Retriever
    from pipeline.config import load_config
    from pipeline.data import cache_dir
    from pipeline.indexing.engines import make_engine
    from pipeline.store.shards import open_shards

    cfg = load_config(args.config, **{"shard_size": args.shard_size, "index.factory": args.factory})
    out = Path(args.out_dir)
    embeddings = cache_dir(cfg.data) / "embeddings"
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    startup = time.perf_counter() - t0
    engines = {"local": make_engine("local"), "ray": make_engine("ray", num_actors=args.num_actors)}
    rows = []
    for r in range(args.rounds):
        times = {}
        for name in (["local", "ray"] if r % 2 == 0 else ["ray", "local"]):
            shutil.rmtree(embeddings, ignore_errors=True)
            t = time.perf_counter()
            Retriever.build(cfg, out / name, engine=engines[name], resume=False)
            times[name] = time.perf_counter() - t
        diff = max(float(np.abs(np.vstack([np.asarray(s.vectors(m)) for s in open_shards(out / "local")])
                                - np.vstack([np.asarray(s.vectors(m)) for s in open_shards(out / "ray")])).max())
                   for m in ("image", "text"))
        rows.append({"round": r + 1, "local_s": round(times["local"], 1), "ray_s": round(times["ray"], 1),
                     "ratio": round(times["ray"] / times["local"], 2), "max_vector_diff": diff})
    info = machine()
    print(f"# Ray engine vs local engine: {args.config}, shard_size {args.shard_size}, {args.factory}\n")
    print(machine_line(info))
    print(f"ray cluster start-up (ray.init, {int(ray.cluster_resources().get('CPU', 0))} CPUs): {startup:.1f} s\n")
    print("| round | local build (s) | ray build (s) | ray / local | max vector difference |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['round']} | {row['local_s']} | {row['ray_s']} | {row['ratio']}× "
              f"| {row['max_vector_diff']:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "startup_s": startup, "rounds": rows}, indent=2))
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
