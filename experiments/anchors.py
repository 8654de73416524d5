"""Anchor policies at equal count (issue 12, part 2): each strategy or option against random on the same splits.

Two split protocols:

- ``--pool P``: per seed, a seeded candidate pool of P items. Every strategy chooses its anchors inside the pool
  and is scored on the items outside it (``pool_split``), so all strategies share one gallery, and a selector
  that reads the image-caption pairing (``aligned``) never sees a gallery pair.
- without ``--pool``: ``relspace eval``'s split (anchors among all items, the rest is the gallery).

``--anchor-captions FILE.jsonl`` (lines ``{"id": ..., "captions": [...]}``) gives anchors more captions: an
anchor's text side is the mean of its own captions and these. Queries stay the data's own captions, so
the extra captions of a gallery item are never used (only anchors' text sides read them).

    python experiments/anchors.py configs/openmoji.yaml --pool 1100 --strategies random,aligned,kmeans
    python experiments/anchors.py configs/openmoji.yaml --anchor-captions aliases.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.config import Config, load_config
from pipeline.encoders import make_encoder
from pipeline.encoders.embed import pool_captions
from pipeline.evaluate import Embeddings, aggregate, anchor_split, evaluate_split, load_embeddings
from pipeline.evaluate.protocol import pool_split

logger = logging.getLogger("experiments.anchors")
METRICS = ("R@1", "R@10")


def with_anchor_captions(emb: Embeddings, cfg: Config, extra: dict[str, list[str]]) -> Embeddings:
    """``emb`` whose anchor text side (``text``) is the mean of each item's captions and its ``extra`` ones,
    embedded by the configured text encoder; the queries (``captions``) are left as they are."""
    caps, items = emb.caption_rows()
    row = {item_id: i for i, item_id in enumerate(emb.ids)}
    unknown = sorted(set(extra) - set(row))
    if unknown:
        raise ValueError(f"extra captions for {len(unknown)} ids not in the data, e.g. {unknown[0]!r}")
    pairs = [(row[i], c) for i, cs in extra.items() for c in cs]
    if not pairs:
        return emb
    vecs = make_encoder(cfg, "text").encode([c for _, c in pairs], batch_size=cfg.batch_size)
    text, _ = pool_captions(np.vstack([caps, vecs]), np.concatenate([items, [i for i, _ in pairs]]),
                            range(len(emb.ids)), "mean")
    logger.info("%d extra captions for %d items", len(pairs), len({i for i, _ in pairs}))
    return dataclasses.replace(emb, text=text, captions=caps, caption_items=items)


def measure(emb: Embeddings, cfg: Config, strategy: str, pool: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """relspace's figures, mean over ``cfg.eval.seeds`` seeds (and the std of R@10), for ``strategy`` under one
    split protocol; and apart, R@10 seed by seed per direction (for paired differences)."""
    runs, galleries = [], []
    for seed in range(cfg.anchors.seed, cfg.anchors.seed + cfg.eval.seeds):
        if pool:
            sub, idx = pool_split(emb, strategy, cfg.anchors.count, pool, seed)
        else:
            sub, idx = emb, anchor_split(emb, load_config(cfg, **{"anchors.strategy": strategy}), cfg.anchors.count,
                                         seed)
        runs.append(evaluate_split(sub, idx, ["relspace"], cfg, seed, cfg.eval.directions).metrics)
        galleries.append(len(sub.ids) - len(idx))
    res = aggregate(runs)["relspace"]
    per_seed = {d: np.array([r["relspace"][d]["R@10"] for r in runs]) for d in cfg.eval.directions}
    return {"gallery": int(np.mean(galleries)),
            **{f"{d} {m}": res[d][m] for d in cfg.eval.directions for m in METRICS},
            **{f"{d} R@10 std": res["std"][d]["R@10"] for d in cfg.eval.directions}}, per_seed


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", help="YAML config")
    ap.add_argument("--strategies", default="random",
                    help="comma-separated anchor strategies; the first is the reference of the paired differences")
    ap.add_argument("--pool", type=int, default=None, help="candidate pool size per seed (gallery: the rest)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a dotted config override")
    ap.add_argument("--anchor-captions", type=Path, default=None, help="JSONL of extra captions for anchors")
    ap.add_argument("--json", action="store_true", help="print JSON rows")
    args = ap.parse_args(argv)
    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    cfg = load_config(args.config, **overrides)
    emb = load_embeddings(cfg)
    if args.anchor_captions:
        lines = args.anchor_captions.read_text().splitlines()
        extra = {r["id"]: r["captions"] for r in map(json.loads, filter(None, lines))}
        emb = with_anchor_captions(emb, cfg, extra)
    rows, first = [], None
    for strategy in args.strategies.split(","):
        figures, per_seed = measure(emb, cfg, strategy, args.pool)
        first = per_seed if first is None else first
        # Seed by seed against the first strategy: with --pool both were scored on one gallery per seed, so
        # the difference is free of the gallery's draw, which dominates the std of either figure.
        paired = {f"{d} R@10 - first": f"{np.mean(per_seed[d] - first[d]):+.4f}±{np.std(per_seed[d] - first[d]):.4f}"
                  for d in per_seed}
        row = {"strategy": strategy, "pool": args.pool, **overrides,
               "anchor_captions": str(args.anchor_captions or ""), **figures, **paired}
        logger.info("%s", row)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        keys = list(rows[0])
        print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
        print("\n".join("| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows))
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main()
