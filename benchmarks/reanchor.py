"""Re-anchoring cost against corpus size: swap the text encoder of an N-item index, for N = 1,914 and 100,000.

    python -m benchmarks.reanchor [--n 100000] [--anchors 800] [--repeats 3]

The 1,914-item index is the real OpenMoji one. The large one is that index with its stored vectors
replaced by N synthetic L2-normalised relative vectors (and N metadata rows): re-anchoring never
reads them, which is the point being measured. Timings are medians, both sizes measured alternately.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import Table, med, round_order, timed_tables


@dataclass
class ReanchorBench:
    """Re-anchoring time of the real OpenMoji index vs the same index carrying ``n`` synthetic stored vectors."""

    n: int = 100_000  # stored vectors per modality in the large index
    anchors: int = 800  # anchor count of both indexes (each swap re-embeds them)
    repeats: int = 3  # swaps per size, the two sizes alternated; medians reported
    to: str = "minilm-l3"  # text encoder to swap to; odd repeats swap back to minilm
    limit: int | None = None  # build the small index from a seeded sample of this many items (smoke runs)


def make_large(src: Path, dst: Path, n: int) -> None:
    """``src`` with both modalities' stored vectors and metadata replaced by ``n`` synthetic rows (one shard)."""
    import pyarrow as pa

    from pipeline.config import IndexConfig
    from pipeline.indexing.commit import build_indexes, publish
    from pipeline.indexing.engines import make_engine
    from pipeline.space.relative import l2_normalize
    from pipeline.store.files import link_tree
    from pipeline.store.manifest import Manifest
    from pipeline.store.shards import ShardPayload, write_shard

    manifest = Manifest.read(src)
    m = manifest.anchors.count
    rng = np.random.default_rng(0)
    ids = [f"x{i}" for i in range(n)]
    payload = ShardPayload(
        vectors={mod: l2_normalize(rng.standard_normal((n, m)).astype(np.float32)) for mod in ("image", "text")},
        items={"image": pa.table({"id": ids, "caption": ["synthetic"] * n}),
               "text": pa.table({"id": ids, "lang": ["en"] * n, "caption": ["synthetic"] * n})})
    stage = Path(tempfile.mkdtemp(prefix="relspace-large-"))
    try:
        shard = write_shard(stage, 0, payload, rows=(0, n), source="synthetic", anchors=manifest.anchors.hash)
        indexes, _ = build_indexes([shard], IndexConfig(), engine=make_engine())
        keep = {"projector.safetensors", "anchors.parquet", "config.yaml"}
        publish(dst, [shard], indexes, manifest, ["en"],
                lambda tmp: link_tree(src, tmp, skip={f.name for f in src.iterdir()} - keep))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def run(b: ReanchorBench) -> Table:
    """Build the small index, derive the large one, and time ``swap_encoder("text", ...)`` on both, alternated."""
    from pipeline import Retriever
    from pipeline.config import load_config

    work = Path(tempfile.mkdtemp(prefix="relspace-reanchor-"))
    try:
        small, large = work / "small", work / "large"
        Retriever.build(load_config(None, **{"anchors.count": b.anchors, "data.limit": b.limit}), small)
        make_large(small, large, b.n)
        paths = {"small": small, "large": large}
        sizes = {"small": Retriever.load(small).indexes["image"].ntotal, "large": b.n}
        times: dict[str, list[float]] = {"small": [], "large": []}
        specs = [b.to, "minilm"]
        for rep in range(b.repeats):
            for name in round_order(list(paths), rep):  # alternate which size goes first
                r = Retriever.load(paths[name])  # loading is not what is measured
                t0 = time.perf_counter()
                r.swap_encoder("text", specs[rep % 2], in_place=True)
                times[name].append(time.perf_counter() - t0)
                assert len(r.search(text="a red apple", k=3)) == 3  # still searchable after the swap
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = med(times["large"]) / med(times["small"])
    return Table("reanchor", "Re-anchoring the text side against corpus size",
                 ["stored vectors per modality", f"re-anchor seconds (median of {b.repeats})"],
                 [[sizes[name], med(times[name])] for name in paths],
                 [f"large/small time ratio {ratio:.2f} for a {sizes['large'] / sizes['small']:.0f}x larger corpus; "
                  f"{b.anchors} anchors re-embedded each time"])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.reanchor", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=ReanchorBench.n, help="stored vectors in the large index")
    ap.add_argument("--anchors", type=int, default=ReanchorBench.anchors)
    ap.add_argument("--repeats", type=int, default=ReanchorBench.repeats)
    ap.add_argument("--to", default=ReanchorBench.to, help="text encoder to swap to (and back)")
    ap.add_argument("--limit", type=int, help="items of the small index (default: all of OpenMoji)")
    b = ReanchorBench(**vars(ap.parse_args(argv)))
    for table in timed_tables(lambda: [run(b)]):
        print(table.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
