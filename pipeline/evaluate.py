"""Retrieval evaluation: seeded disjoint splits, R@K / MRR / median rank, every method in one pass."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .anchors import select_anchors
from .config import Config, load_config
from .methods import fit_method

logger = logging.getLogger(__name__)

DIRECTIONS = {"t2i": ("text", "image"), "i2t": ("image", "text")}
RANK_CHUNK = 2048


def ranks_of_truth(xq: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """0-based rank of gallery item i for query i (the pairs are aligned), counting ties against us.

    Pessimistic on ties: a gallery item scoring equal to the true one ranks ahead of it, so a method
    that gives many items the same score (sparse vectors, chance) cannot look better than it is.
    """
    n = len(xq)
    ranks = np.empty(n, dtype=np.int64)
    true = np.einsum("ij,ij->i", xq, xb)
    for s in range(0, n, RANK_CHUNK):
        scores = xq[s : s + RANK_CHUNK] @ xb.T
        ranks[s : s + RANK_CHUNK] = (scores >= true[s : s + RANK_CHUNK, None] - 1e-6).sum(axis=1) - 1
    return ranks


def retrieval_metrics(ranks: np.ndarray, ks: list[int]) -> dict[str, float]:
    """R@K, MRR and median rank (1-based) from 0-based ranks of the true match."""
    out = {f"R@{k}": float(np.mean(ranks < k)) for k in ks}
    out["MRR"] = float(np.mean(1.0 / (ranks + 1)))
    out["MedR"] = float(np.median(ranks + 1))
    return out


@dataclass
class Embeddings:
    """Absolute vectors of every item, aligned by row: the input every method is fitted and scored on."""

    text: np.ndarray
    image: np.ndarray
    ids: list[str]


def load_embeddings(cfg: Config) -> Embeddings:
    """Load the configured data and embed captions (primary language) and images, through the cache."""
    from .data import cache_dir, load_data
    from .embed import embed_dataset
    from .encoders import create_encoder

    ds = load_data(cfg.data)
    cache = cache_dir(cfg.data) / "embeddings"
    vecs = {}
    for modality, spec in (("text", cfg.text_encoder), ("image", cfg.image_encoder)):
        enc = create_encoder(spec, modality, cfg.device)
        if hasattr(enc, "num_workers") and cfg.num_workers is not None:
            enc.num_workers = cfg.num_workers
        vecs[modality] = embed_dataset(ds, enc, batch_size=cfg.batch_size, cache=cache)
    return Embeddings(vecs["text"], vecs["image"], list(ds["id"]))


def evaluate_split(
    emb: Embeddings, anchor_idx: np.ndarray, methods: list[str], cfg: Config, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Fit every method on one anchor set and score it on every non-anchor item."""
    mask = np.ones(len(emb.ids), dtype=bool)
    mask[anchor_idx] = False
    gallery = {"text": emb.text[mask], "image": emb.image[mask]}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in methods:
        space = fit_method(name, emb.text[anchor_idx], emb.image[anchor_idx], cfg.projector, seed)
        mapped = {"text": space.text(gallery["text"]), "image": space.image(gallery["image"])}
        out[name] = {
            d: retrieval_metrics(ranks_of_truth(mapped[q], mapped[g]), cfg.eval.ks)
            for d, (q, g) in DIRECTIONS.items()
            if d in cfg.eval.directions
        }
    return out


def _aggregate(runs: list[dict[str, dict[str, dict[str, float]]]]) -> dict[str, dict[str, Any]]:
    """Mean over seeds, with the standard deviation under ``std``."""
    out: dict[str, dict[str, Any]] = {}
    for method in runs[0]:
        res: dict[str, Any] = {"std": {}}
        for d in runs[0][method]:
            vals = {m: [r[method][d][m] for r in runs] for m in runs[0][method][d]}
            res[d] = {m: round(float(np.mean(v)), 4) for m, v in vals.items()}
            res["std"][d] = {m: round(float(np.std(v)), 4) for m, v in vals.items()}
        out[method] = res
    return out


def evaluate(config: str | Path | Config | None = None, emb: Embeddings | None = None) -> dict[str, Any]:
    """Run ``relspace eval``: the configured projector and every baseline on the same seeded splits.

    Args:
        config: YAML path or Config; None is the embedded OpenMoji default.
        emb: precomputed embeddings (sweeps reuse them); None embeds the configured data.

    Returns:
        The JSON-ready report: ``t2i``/``i2t`` for relspace, ``baselines.<name>``, ``anchors``,
        ``gallery``, ``seeds`` and, with ``eval.anchor_counts``, an R@10 ``curve``.
    """
    cfg = load_config(config)
    t0 = time.perf_counter()
    emb = emb or load_embeddings(cfg)
    methods = ["relspace"] + [b for b in cfg.eval.baselines if b != "relspace"]
    seeds = [cfg.anchors.seed + s for s in range(cfg.eval.seeds)]
    feats = np.hstack([_unit(emb.text), _unit(emb.image)])

    def run(count: int) -> dict[str, dict[str, Any]]:
        runs = []
        for seed in seeds:
            idx = select_anchors(len(emb.ids), count, strategy=cfg.anchors.strategy, seed=seed, features=feats)
            runs.append(evaluate_split(emb, idx, methods, cfg, seed))
        return _aggregate(runs)

    main = run(cfg.anchors.count)
    report: dict[str, Any] = {
        "method": "relspace",
        "projector": dict(vars(cfg.projector)),
        **{k: v for k, v in main["relspace"].items()},
        "baselines": {m: main[m] for m in methods if m != "relspace"},
        "anchors": cfg.anchors.count,
        "anchor_strategy": cfg.anchors.strategy,
        "gallery": len(emb.ids) - cfg.anchors.count,
        "items": len(emb.ids),
        "seeds": seeds,
        "encoders": {"text": cfg.text_encoder, "image": cfg.image_encoder},
        "data": cfg.data.source,
    }
    if cfg.eval.anchor_counts:
        curve = {}
        for count in sorted(set(cfg.eval.anchor_counts)):
            res = main if count == cfg.anchors.count else run(count)
            curve[str(count)] = {m: {d: res[m][d]["R@10"] for d in cfg.eval.directions} for m in methods}
        report["curve"] = curve
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if cfg.eval.plot_dir:
        from .plots import write_plots

        report["plots"] = write_plots(report, emb, cfg, Path(cfg.eval.plot_dir))
    return report


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def format_table(report: dict[str, Any]) -> str:
    """A markdown table: one row per method, R@1/R@5/R@10/MRR/MedR for each direction."""
    dirs = [d for d in DIRECTIONS if d in report]
    metrics = [m for m in report[dirs[0]]]
    head = "| method | " + " | ".join(f"{d} {m}" for d in dirs for m in metrics) + " |"
    sep = "|" + "---|" * (1 + len(dirs) * len(metrics))
    rows = [("relspace", report)] + list(report["baselines"].items())
    lines = [head, sep]
    for name, res in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(res[d][m]) for d in dirs for m in metrics) + " |")
    caption = (
        f"{report['anchors']} {report['anchor_strategy']} anchors, gallery {report['gallery']}, "
        f"seeds {report['seeds']}, text {report['encoders']['text']}, image {report['encoders']['image']}"
    )
    return "\n".join(lines) + f"\n\n{caption}"


def _fmt(v: float) -> str:
    return f"{v:.1f}" if v >= 2 else f"{v:.3f}"


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)
