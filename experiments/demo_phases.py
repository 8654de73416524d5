"""Where a first ``relspace demo`` spends its embedding time: images, captions (every language) and thumbnails of the
same items, measured in interleaved rounds so that a shared machine's load falls on all three alike.

    python experiments/demo_phases.py --n 256 --reps 3

Prints each part's median seconds per round and its share, and the load average before and after. The demo's
own phase lines ("anchors took", "embedding and projecting took", ...) come from ``relspace demo --rebuild -v``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from pipeline.config import load_config
from pipeline.data import caption_rows, captions, load_data
from pipeline.encoders import make_encoder
from pipeline.indexing.stream import thumbnail_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="YAML config (default: the embedded OpenMoji demo)")
    ap.add_argument("--n", type=int, default=256, help="items per round")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds")
    args = ap.parse_args()
    cfg = load_config(args.config)
    ds = load_data(cfg.data)
    sub = ds.select(range(min(args.n, len(ds))))
    image, text = make_encoder(cfg, "image"), make_encoder(cfg, "text")
    texts = [t for lang in cfg.data.languages for t in caption_rows(captions(sub, lang))[1]]
    images = list(sub["image"])
    parts: dict[str, Callable[[], Any]] = {
        "images": lambda: image.encode(images, batch_size=cfg.batch_size, show_progress=False),
        f"captions ({len(cfg.data.languages)} languages, {len(texts)} rows)":
            lambda: text.encode(texts, batch_size=cfg.batch_size, show_progress=False),
        "thumbnails": lambda: thumbnail_table(sub, cfg.index.thumbnails),
    }
    for run in parts.values():  # warm-up: first-call costs are not what a build of many items pays
        run()
    load = [os.getloadavg()[0]]
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.reps):
        for name, run in parts.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    load.append(os.getloadavg()[0])
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    total = sum(medians.values())
    print(json.dumps({"items": len(sub), "load_1min": load, "seconds": medians,
                      "share": {name: round(s / total, 3) for name, s in medians.items()}}, indent=2))


if __name__ == "__main__":
    main()
