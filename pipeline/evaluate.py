"""Retrieval evaluation: seeded disjoint splits, R@K / MRR / median rank, every method in one pass."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .anchors import select_anchors, selection_features
from .config import Config, load_config
from .encoders import make_encoder
from .methods import fit_method
from .relative import RelativeProjector, l2_normalize

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


def load_embeddings(cfg: Config, text_encoder: str | None = None, image_encoder: str | None = None) -> Embeddings:
    """Load the configured data and embed captions (primary language) and images, through the cache.

    ``text_encoder``/``image_encoder`` replace the configured specs (the encoder-swap evaluation).
    """
    from .data import cache_dir, load_data
    from .embed import embed_dataset

    ds = load_data(cfg.data)
    cache = cache_dir(cfg.data) / "embeddings"
    specs = {"text": text_encoder, "image": image_encoder}
    vecs = {m: embed_dataset(ds, make_encoder(cfg, m, specs[m]), lang=cfg.data.languages[0] if m == "text" else None,
                             batch_size=cfg.batch_size, cache=cache)
            for m in ("text", "image")}
    return Embeddings(vecs["text"], vecs["image"], list(ds["id"]))


def language_table(cfg: Config, native: Embeddings, seeds: list[int]) -> dict[str, dict[str, dict[str, float]]]:
    """Text->image per query language: through that language's anchor captions ("translated") and,
    as the baseline, through the English anchor captions ("english_anchors")."""
    from .data import cache_dir, load_data
    from .embed import embed_dataset

    missing = [lang for lang in cfg.eval.languages if lang not in cfg.data.languages]
    if missing:
        raise ValueError(f"eval.languages {missing} are not in data.languages {cfg.data.languages}")
    ds = load_data(cfg.data)
    cache = cache_dir(cfg.data) / "embeddings"
    primary = native.text
    ks = [k for k in (1, 10) if k in cfg.eval.ks] or cfg.eval.ks[:1]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for lang in cfg.eval.languages:
        enc = make_encoder(cfg, "text", cfg.text_encoders.get(lang))
        x = embed_dataset(ds, enc, lang=lang, batch_size=cfg.batch_size, cache=cache)
        runs: dict[str, list[dict[str, float]]] = {"translated": [], "english_anchors": []}
        for seed in seeds:
            idx = anchor_split(native, cfg, cfg.anchors.count, seed)
            mask = np.ones(len(x), dtype=bool)
            mask[idx] = False
            gallery = RelativeProjector(cfg.projector).fit(native.image[idx]).transform(native.image[mask])
            for name, anchors in (("translated", x[idx]), ("english_anchors", primary[idx])):
                q = RelativeProjector(cfg.projector).fit(anchors).transform(x[mask])
                runs[name].append(retrieval_metrics(ranks_of_truth(q, gallery), ks))
        table[lang] = {name: {m: round(float(np.mean([r[m] for r in rs])), 4) for m in rs[0]}
                       for name, rs in runs.items()}
    return table


def knn_sets(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's k nearest other rows by cosine (self excluded)."""
    x = l2_normalize(x)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    return np.argpartition(-s, k, axis=1)[:, :k]


def cross_space_measures(x1: np.ndarray, x2: np.ndarray, k: int = 10) -> dict[str, float | None]:
    """How alike two spaces of the same items are (Moschella et al., Table 1).

    Jaccard@k of each item's neighbourhoods, MRR (and R@1) of finding item i of space 2 with item i of
    space 1, and the mean cosine of the pairs. Cross-space retrieval and cosine need equal dims; they
    are None otherwise.
    """
    n1, n2 = knn_sets(x1, k), knn_sets(x2, k)
    jac = np.mean([len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(n1, n2)])
    out: dict[str, float | None] = {f"Jaccard@{k}": round(float(jac), 4), "MRR": None, "R@1": None, "cosine": None}
    if x1.shape[1] == x2.shape[1]:
        a, b = l2_normalize(x1), l2_normalize(x2)
        ranks = ranks_of_truth(a, b)
        out.update(MRR=round(float(np.mean(1 / (ranks + 1))), 4), **{"R@1": round(float(np.mean(ranks == 0)), 4)},
                   cosine=round(float(np.mean(np.einsum("ij,ij->i", a, b))), 4))
    return out


def cross_space(x1: np.ndarray, x2: np.ndarray, anchor_idx: np.ndarray, cfg: Config) -> dict[str, Any]:
    """Cross-space measures on the non-anchor items, absolute and relative side by side."""
    mask = np.ones(len(x1), dtype=bool)
    mask[anchor_idx] = False
    p1, p2 = RelativeProjector(cfg.projector).fit(x1[anchor_idx]), RelativeProjector(cfg.projector).fit(x2[anchor_idx])
    k = cfg.eval.cross_space_k
    return {
        "absolute": cross_space_measures(x1[mask], x2[mask], k),
        "relative": cross_space_measures(p1.transform(x1[mask]), p2.transform(x2[mask]), k),
    }


def anchor_split(emb: Embeddings, cfg: Config, count: int, seed: int) -> np.ndarray:
    """Anchor indices for one seed; every other item is the gallery, so the split is always disjoint."""
    return select_anchors(len(emb.ids), count, strategy=cfg.anchors.strategy, seed=seed,
                          features=lambda: selection_features(emb.image, emb.text))


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
    native, swapped = emb, None  # splits always come from the native embeddings: identical across a swap
    if cfg.eval.swap_text_encoder or cfg.eval.swap_image_encoder:
        swapped = load_embeddings(cfg, cfg.eval.swap_text_encoder, cfg.eval.swap_image_encoder)
        emb = swapped
        # A swap changes the query side only: the stored gallery keeps its vectors, so only the directions
        # whose queries come from a swapped encoder are measured after the swap.
        cfg.eval.directions = [d for d in cfg.eval.directions
                               if getattr(cfg.eval, f"swap_{DIRECTIONS[d][0]}_encoder")]
    methods = ["relspace"] + [b for b in cfg.eval.baselines if b != "relspace"]
    seeds = [cfg.anchors.seed + s for s in range(cfg.eval.seeds)]

    def run(count: int, e: Embeddings = emb) -> dict[str, dict[str, Any]]:
        return _aggregate([evaluate_split(e, anchor_split(native, cfg, count, seed), methods, cfg, seed)
                           for seed in seeds])

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
        "encoders": {"text": cfg.eval.swap_text_encoder or cfg.text_encoder,
                     "image": cfg.eval.swap_image_encoder or cfg.image_encoder},
        "data": cfg.data.source,
    }
    if cfg.eval.anchor_counts:
        curve = {}
        for count in sorted(set(cfg.eval.anchor_counts)):
            res = main if count == cfg.anchors.count else run(count)
            curve[str(count)] = {m: {d: res[m][d]["R@10"] for d in cfg.eval.directions} for m in methods}
        report["curve"] = curve
    if swapped is not None:
        native_main = run(cfg.anchors.count, native)
        report["native"] = {**native_main["relspace"],
                            "baselines": {m: native_main[m] for m in methods if m != "relspace"}}
        report["swap"] = {"text": cfg.eval.swap_text_encoder, "image": cfg.eval.swap_image_encoder,
                          "native": {"text": cfg.text_encoder, "image": cfg.image_encoder}}
        report["cross_space"] = {}
        for m in ("text", "image"):
            if getattr(cfg.eval, f"swap_{m}_encoder"):
                runs = [cross_space(getattr(native, m), getattr(swapped, m),
                                    anchor_split(native, cfg, cfg.anchors.count, seed), cfg) for seed in seeds]
                report["cross_space"][m] = _mean_nested(runs)
    if cfg.eval.languages:
        report["languages"] = language_table(cfg, native, seeds)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if cfg.eval.plot_dir:
        from .plots import write_plots

        report["plots"] = write_plots(report, emb, cfg, Path(cfg.eval.plot_dir))
    return report


def sweep(
    config: str | Path | Config | None, grid: dict[str, list[Any]], baselines: bool = False
) -> list[dict[str, Any]]:
    """Evaluate every combination of ``grid`` (dotted config key -> values) on the same seeded splits.

    Embeddings are computed once per encoder pair and reused, so a projector or anchor grid costs
    only the projections.

    Returns:
        One row per combination: the overrides, then the relspace figures (and the baselines' if asked).
    """
    import itertools

    base = load_config(config)
    keys = list(grid)
    cache: dict[tuple[str, str], Embeddings] = {}
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        cfg = load_config(base, **dict(zip(keys, values)))
        if not baselines:
            cfg.eval.baselines = []
        pair = (cfg.text_encoder, cfg.image_encoder)
        if pair not in cache:
            cache[pair] = load_embeddings(cfg)
        rep = evaluate(cfg, emb=cache[pair])
        row: dict[str, Any] = dict(zip(keys, values))
        for name, res in [("relspace", rep), *rep["baselines"].items()]:
            for d in cfg.eval.directions:
                row.update({f"{name} {d} {m}": res[d][m] for m in ("R@1", "R@10")})
        rows.append(row)
        logger.info("sweep %s", row)
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A markdown table of sweep rows."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols) + " |"
              for r in rows]
    return "\n".join(lines)


def _mean_nested(runs: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float | None]]:
    return {
        space: {m: None if runs[0][space][m] is None else round(float(np.mean([r[space][m] for r in runs])), 4)
                for m in runs[0][space]}
        for space in runs[0]
    }


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
