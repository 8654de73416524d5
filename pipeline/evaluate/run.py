"""``relspace eval``: the configured projector and every baseline on the same seeded splits, as one report."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, load_config
from ..data import describe_data
from ..space.fit import check_options
from . import classify, protocol
from .classify import classify_report
from .metrics import DIRECTIONS
from .protocol import (
    Embeddings,
    Ranks,
    anchor_split,
    cross_space,
    evaluate_split,
    index_weights,
    language_table,
    text_queries,
)
from .report import aggregate, mean_nested

logger = logging.getLogger(__name__)


def evaluate(config: str | Path | Config | None = None, emb: Embeddings | None = None) -> dict[str, Any]:
    """Run ``relspace eval``: the configured projector and every baseline on the same seeded splits.

    Args:
        config: YAML path or Config (never modified); None is the embedded OpenMoji default.
        emb: precomputed embeddings (sweeps reuse them); None embeds the configured data.

    Returns:
        The JSON-ready report of ``eval.task``. Retrieval: ``t2i``/``i2t`` for relspace,
        ``baselines.<name>``, ``anchors``, ``gallery``, ``seeds`` and, with ``eval.anchor_counts``, an
        R@10 ``curve``; with ``eval.plot_dir``, the paths of the PNGs under ``plots``. Classify: see
        :func:`~pipeline.evaluate.classify.classify_report`.
    """
    t0 = time.perf_counter()
    cfg = load_config(config)
    check_options(cfg.projector)  # before any model loads, as a build refuses it
    if cfg.eval.task == "classify":
        labels = classify.load_labels(cfg)  # a missing or empty label column is refused before any model loads
        report = classify_report(cfg, emb if emb is not None else protocol.load_embeddings(cfg), labels)
        report["seconds"] = round(time.perf_counter() - t0, 2)
        return report
    report, ranks = evaluate_with_ranks(cfg, emb)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if cfg.eval.plot_dir:
        from .plots import write_plots  # matplotlib loads only when plots are asked for

        report["plots"] = write_plots(report, ranks, measured_directions(cfg), Path(cfg.eval.plot_dir))
    return report


def swap_specs(cfg: Config) -> dict[str, str | None]:
    """Modality -> the encoder its queries are swapped to (None: not swapped)."""
    return {"text": cfg.eval.swap_text_encoder, "image": cfg.eval.swap_image_encoder}


def measured_directions(cfg: Config) -> list[str]:
    """The configured directions that the report measures.

    A swap changes the query side only: the stored gallery keeps its vectors, so after a swap only the
    directions whose queries come from a swapped encoder are measured.
    """
    swaps = swap_specs(cfg)
    if not any(swaps.values()):
        return list(cfg.eval.directions)
    return [d for d in cfg.eval.directions if swaps[DIRECTIONS[d][0]]]


def evaluate_with_ranks(
    config: str | Path | Config | None, emb: Embeddings | None = None
) -> tuple[dict[str, Any], Ranks]:
    """The eval report (without ``seconds`` and ``plots``) and, apart from it, the ranks behind the main figures.

    Returns:
        ``(report, ranks)``: ``ranks`` holds, per method and measured direction, the 0-based rank of the
        true match of every gallery item, for the first seed at the configured anchor count.
    """
    cfg = load_config(config)
    check_options(cfg.projector)
    if cfg.eval.task != "retrieval":
        raise ValueError(f"evaluate_with_ranks measures retrieval, not eval.task {cfg.eval.task!r}; use evaluate()")
    native = emb if emb is not None else protocol.load_embeddings(cfg)
    swaps = swap_specs(cfg)
    # splits always come from the native embeddings, so they are identical across a swap
    swapped = protocol.load_embeddings(cfg, swaps["text"], swaps["image"]) if any(swaps.values()) else None
    scored = swapped if swapped is not None else native
    directions = measured_directions(cfg)
    methods = ["relspace"] + [b for b in cfg.eval.baselines if b != "relspace"]
    seeds = [cfg.anchors.seed + s for s in range(cfg.eval.seeds)]

    def run(e: Embeddings, count: int) -> tuple[dict[str, dict[str, Any]], Ranks]:
        splits = [evaluate_split(e, anchor_split(native, cfg, count, seed), methods, cfg, seed, directions)
                  for seed in seeds]
        return aggregate([s.metrics for s in splits]), splits[0].ranks

    main, ranks = run(scored, cfg.anchors.count)
    report: dict[str, Any] = {
        "method": "relspace",
        "projector": dict(vars(cfg.projector)),
        **main["relspace"],
        "baselines": {m: main[m] for m in methods if m != "relspace"},
        "anchors": cfg.anchors.count,
        "anchor_strategy": cfg.anchors.strategy,
        "gallery": len(scored.ids) - cfg.anchors.count,
        # every caption of a gallery item queries (t2i): more than the gallery with several captions per image
        "text_queries": round(float(np.mean([text_queries(scored, anchor_split(native, cfg, cfg.anchors.count, seed))
                                             for seed in seeds])), 1),
        "items": len(scored.ids),
        "seeds": seeds,
        "encoders": {"text": swaps["text"] or cfg.text_encoder, "image": swaps["image"] or cfg.image_encoder},
        "data": describe_data(cfg.data),
    }
    if cfg.eval.anchor_counts:
        curve = {}
        for count in sorted(set(cfg.eval.anchor_counts)):
            res = main if count == cfg.anchors.count else run(scored, count)[0]
            curve[str(count)] = {m: {d: res[m][d]["R@10"] for d in directions} for m in methods}
        report["curve"] = curve
    if swapped is not None:
        native_main = run(native, cfg.anchors.count)[0]
        report["native"] = {**native_main["relspace"],
                            "baselines": {m: native_main[m] for m in methods if m != "relspace"}}
        report["swap"] = {**swaps, "native": {"text": cfg.text_encoder, "image": cfg.image_encoder}}
        splits = [anchor_split(native, cfg, cfg.anchors.count, seed) for seed in seeds]
        report["cross_space"] = {
            m: mean_nested([cross_space(native.get(m), swapped.get(m), idx, cfg, index_weights(native, idx, cfg))
                            for idx in splits])
            for m in ("text", "image") if swaps[m]
        }
    if cfg.eval.languages:
        report["languages"] = language_table(cfg, native, seeds)
    return report, ranks
