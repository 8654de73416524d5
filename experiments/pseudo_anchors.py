"""Pseudo-anchors bootstrapped from unpaired gallery items, on top of the real anchors, scored on held-out test queries.

    python experiments/pseudo_anchors.py [CONFIG] [--dev-fraction 0.3] [--precision 0.8] [--rounds 2] [--json]

Protocol, per seed of ``relspace eval``'s splits (same anchors, same 1,114-item gallery):
- the non-anchor items are split at random into a dev part (``--dev-fraction``) and a test part;
- unpaired pools: every non-anchor caption and every non-anchor image, their pairing hidden ("transductive":
  a search engine holds its gallery's images and captions unpaired, so mining them needs no label), or only
  the dev items' ("inductive": test items take no part in mining at all);
- mutual nearest neighbours with a margin in the configured relative space; the margin threshold is the
  smallest at which the candidates the dev pairs can judge (a dev caption or a dev image) reach
  ``--precision``; pairs above it join the real anchors (``--rounds`` times, refitting in between);
- scored: every test caption against every non-anchor image (t2i) and every test image against every
  non-anchor caption (i2t) (``--search-over test``: against the test items only), for the real anchors
  alone and with the pseudo-anchors. No test pairing is used by the method; the precision of all added
  pairs (``added_precision``) is computed afterwards as a diagnostic.
- two controls use dev pairs as anchors (never test pairs): the inductive run's mined images with their true
  captions (what the same number of correct pseudo-anchors would give), and all dev pairs as real anchors.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from pipeline import load_config
from pipeline.evaluate import aggregate, anchor_split, gallery_mask, load_embeddings, retrieval_metrics
from pipeline.evaluate.methods import SharedMaps, fit_method
from pipeline.evaluate.metrics import ranks_of_owner
from pipeline.evaluate.pseudo_anchors import bootstrap


def score(space: SharedMaps, caps: np.ndarray, items: np.ndarray, image: np.ndarray, gallery: np.ndarray,
          test: np.ndarray, ks: list[int]) -> dict[str, dict[str, float]]:
    """t2i for test captions over the gallery's images, i2t for test images over the gallery's captions.

    t2i also gets ``top1_dev``: the share of test captions whose first image is a dev item (never the right
    answer), which shows whether gallery items that became anchors pull queries to themselves.
    """
    in_gallery, in_test = np.isin(items, gallery), np.isin(items, test)
    q_t, q_i = space.text(caps[in_test]), space.image(image[test])
    g_i, g_t = space.image(image[gallery]), space.text(caps[in_gallery])
    t2i = retrieval_metrics(ranks_of_owner(q_t, g_i, items[in_test], gallery), ks)
    t2i["top1_dev"] = float(np.mean(~np.isin(gallery[(q_t @ g_i.T).argmax(axis=1)], test)))
    return {"t2i": t2i, "i2t": retrieval_metrics(ranks_of_owner(q_i, g_t, test, items[in_gallery]), ks)}


def run(config: str | None, dev_fraction: float, precision: float, rounds: int, search_over: str = "gallery",
        ) -> dict[str, Any]:
    cfg = load_config(config)
    emb = load_embeddings(cfg)
    caps, items = emb.caption_rows()
    seeds = [cfg.anchors.seed + s for s in range(cfg.eval.seeds)]
    splits: list[dict[str, Any]] = []
    stats: dict[str, list[dict[str, float]]] = {"transductive": [], "inductive": []}
    for seed in seeds:
        idx = anchor_split(emb, cfg, cfg.anchors.count, seed)
        gallery = np.flatnonzero(gallery_mask(len(emb.ids), idx))
        dev = np.sort(np.random.default_rng([seed, 7]).choice(gallery, int(round(dev_fraction * len(gallery))),
                                                                replace=False))
        test = np.setdiff1d(gallery, dev)
        is_dev = np.isin(np.arange(len(emb.ids)), dev)
        searched = gallery if search_over == "gallery" else test

        def fit(at: np.ndarray, ai: np.ndarray, seed: int = seed) -> SharedMaps:
            return fit_method("relspace", at, ai, cfg.projector, seed)

        split = {"relspace": score(fit(emb.text[idx], emb.image[idx]), caps, items, emb.image, searched, test,
                                   cfg.eval.ks)}
        for variant, pool in (("transductive", gallery), ("inductive", dev)):
            cap_rows = np.flatnonzero(np.isin(items, pool))
            pool_t_item, pool_i_item = items[cap_rows], pool

            def judge(t: np.ndarray, i: np.ndarray, ti: np.ndarray = pool_t_item, ii: np.ndarray = pool_i_item,
                      is_dev: np.ndarray = is_dev) -> np.ndarray:
                """Only dev pairs are known: a pair touching a dev item is right iff both sides are that item."""
                a, b = ti[t], ii[i]
                return np.where(is_dev[a] | is_dev[b], (a == b).astype(float), np.nan)

            at, ai, hist = bootstrap(fit, emb.text[idx], emb.image[idx], caps[cap_rows], emb.image[pool], judge,
                                     precision=precision, rounds=rounds)
            split[f"pseudo-{variant}"] = score(fit(at, ai), caps, items, emb.image, searched, test, cfg.eval.ks)
            added_t = np.concatenate([pool_t_item[h.added_text] for h in hist]) if hist else np.array([], int)
            added_i = np.concatenate([pool_i_item[h.added_image] for h in hist]) if hist else np.array([], int)
            stats[variant].append({
                "added": float(len(added_t)),
                "rounds_run": float(len(hist)),
                "dev_precision_first_round": hist[0].dev_precision if hist else float("nan"),
                "added_precision": float(np.mean(added_t == added_i)) if len(added_t) else float("nan"),
                "added_test_items": float(np.isin(added_i, test).sum()),
            })
        # Controls, not methods (they use dev pairs as anchors; still no test pair): the inductive pseudo-anchors'
        # images with their true captions, and every dev pair as a real anchor.
        true_i = np.concatenate([dev[h.added_image] for h in hist]) if hist else np.array([], int)
        for name, extra in (("control-inductive-images-truly-paired", true_i), ("control-all-dev-pairs", dev)):
            both = np.concatenate([idx, extra])
            split[name] = score(fit(emb.text[both], emb.image[both]), caps, items, emb.image, searched, test,
                                cfg.eval.ks)
        splits.append(split)
    return {
        "methods": aggregate(splits),
        "pseudo_anchor_stats": {v: {k: round(float(np.nanmean([s[k] for s in rs])), 4) for k in rs[0]}
                                for v, rs in stats.items()},
        "anchors": cfg.anchors.count, "gallery": int(len(emb.ids) - cfg.anchors.count),
        "test_queries": "non-anchor items outside the dev split", "searched": search_over,
        "dev_fraction": dev_fraction,
        "precision_gate": precision, "rounds": rounds, "seeds": seeds,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=None, help="YAML config (default: the embedded OpenMoji one)")
    ap.add_argument("--dev-fraction", type=float, default=0.3, help="share of the non-anchor items whose pairs gate")
    ap.add_argument("--precision", type=float, default=0.8, help="dev precision the added pairs must reach")
    ap.add_argument("--rounds", type=int, default=2, help="bootstrap rounds (refit, mine, gate, add)")
    ap.add_argument("--search-over", choices=["gallery", "test"], default="gallery",
                    help="what queries search: every non-anchor item, or the test items only (no dev item, so no "
                         "gallery item that became an anchor, except mined test items)")
    ap.add_argument("--json", action="store_true", help="print the JSON report instead of a table")
    args = ap.parse_args(argv)
    rep = run(args.config, args.dev_fraction, args.precision, args.rounds, args.search_over)
    if args.json:
        print(json.dumps(rep, indent=1))
        return
    print("| method | t2i R@1 | t2i R@10 | i2t R@1 | i2t R@10 | t2i top-1 on a dev item |\n|---|---|---|---|---|---|")
    for name, res in rep["methods"].items():
        cells = [res[d][k] for d in ("t2i", "i2t") for k in ("R@1", "R@10")] + [res["t2i"]["top1_dev"]]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    print(json.dumps(rep["pseudo_anchor_stats"], indent=1))


if __name__ == "__main__":
    main()
