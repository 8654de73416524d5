"""Re-anchoring cost against corpus size: swap the text encoder of an N-item index, for N = 1,914 and 100,000.

    python benchmarks/reanchor.py [--n 100000] [--anchors 800] [--repeats 3]

The 1,914-item index is the real OpenMoji one. The large one is that index with its stored vectors
replaced by N synthetic L2-normalised relative vectors (and N metadata rows): re-anchoring never
reads them, which is the point being measured. Timings are medians, both sizes measured alternately.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_large(src: Path, dst: Path, n: int) -> None:
    """Copy ``src`` and replace both modalities' stored vectors and metadata with ``n`` synthetic rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.index import build_faiss, write_faiss
    from pipeline.relative import l2_normalize

    shutil.copytree(src, dst)
    m = int(pq.read_metadata(src / "anchors.parquet").num_rows)
    rng = np.random.default_rng(0)
    for modality in ("image", "text"):
        xb = l2_normalize(rng.standard_normal((n, m)).astype(np.float32))
        write_faiss(build_faiss(xb, "Flat"), dst / f"{modality}.faiss")
        cols = {"id": [f"x{i}" for i in range(n)], "caption": ["synthetic"] * n}
        if modality == "text":
            cols["lang"] = ["en"] * n
        pq.write_table(pa.table(cols), dst / f"{modality}_items.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="stored vectors in the large index")
    ap.add_argument("--anchors", type=int, default=800)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--to", default="minilm-l3", help="text encoder to swap to (and back)")
    args = ap.parse_args()

    from pipeline import Retriever
    from pipeline.config import load_config

    work = Path(tempfile.mkdtemp(prefix="relspace-reanchor-"))
    small = work / "small"
    Retriever.build(load_config(None, **{"anchors.count": args.anchors}), small)
    large = work / "large"
    make_large(small, large, args.n)
    sizes = {"small": Retriever.load(small).indexes["image"].ntotal, "large": args.n}
    times: dict[str, list[float]] = {"small": [], "large": []}
    specs = [args.to, "minilm"]
    for rep in range(args.repeats):
        order = [("small", small), ("large", large)]
        for name, path in order if rep % 2 == 0 else order[::-1]:  # alternate which size goes first
            r = Retriever.load(path)
            t0 = time.perf_counter()
            r.swap_encoder("text", specs[rep % 2])
            times[name].append(time.perf_counter() - t0)
            assert len(r.search(text="a red apple", k=3)) == 3  # still searchable after the swap
    print(f"| stored vectors per modality | re-anchor seconds (median of {args.repeats}) |")
    print("|---|---|")
    for name in ("small", "large"):
        print(f"| {sizes[name]:,} | {statistics.median(times[name]):.2f} |")
    ratio = statistics.median(times["large"]) / statistics.median(times["small"])
    print(f"\nlarge/small time ratio {ratio:.2f} for a {sizes['large'] / sizes['small']:.0f}x larger corpus; "
          f"{args.anchors} anchors re-embedded each time")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
