"""``relspace sweep``: one eval per combination of config overrides, on the same seeded splits."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

from ..config import Config, load_config
from ..space.fit import check_options
from . import protocol
from .protocol import Embeddings
from .run import evaluate, measured_directions

logger = logging.getLogger(__name__)


def sweep(
    config: str | Path | Config | None, grid: dict[str, list[Any]], baselines: bool = False
) -> list[dict[str, Any]]:
    """Evaluate every combination of ``grid`` (dotted config key -> values) on the same seeded splits.

    Embeddings are computed once per encoder pair and reused, so a projector or anchor grid costs
    only the projections.

    Returns:
        One row per combination: the overrides, then the relspace figures (and the baselines' if asked).
    """
    base = load_config(config)
    if base.eval.task != "retrieval":
        raise ValueError(f"relspace sweep measures retrieval; eval.task is {base.eval.task!r}")
    keys = list(grid)
    cache: dict[str, Embeddings] = {}
    rows = []
    combos = [(values, load_config(base, **dict(zip(keys, values)))) for values in itertools.product(*grid.values())]
    for _, cfg in combos:  # a combination no fit can honour is refused before the first one runs
        check_options(cfg.projector)
    for values, cfg in combos:
        if not baselines:
            cfg.eval.baselines = []
        # Everything that changes the embeddings: encoders, the data, and how an item's captions are pooled.
        pair = repr((cfg.text_encoder, cfg.image_encoder, cfg.text_encoders, cfg.data, cfg.anchors.caption_pooling))
        if pair not in cache:
            cache[pair] = protocol.load_embeddings(cfg)
        rep = evaluate(cfg, emb=cache[pair])
        row: dict[str, Any] = dict(zip(keys, values))
        for name, res in [("relspace", rep), *rep["baselines"].items()]:
            for d in measured_directions(cfg):
                row.update({f"{name} {d} {m}": res[d][m] for m in ("R@1", "R@10")})
        rows.append(row)
        logger.info("sweep %s", row)
    return rows
