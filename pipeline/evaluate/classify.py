"""Zero-shot classification (``relspace eval --task classify``): each test image takes its nearest class prompt.

On the same seeded anchor splits as retrieval, every method is fitted on the anchors; the classes of a
label column are embedded from the prompt templates by the configured text encoder and mapped by the
method's text map, every non-anchor image by its image map, and the image ranks the classes by inner
product (cosine: every method L2-normalises its outputs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config
from ..data import describe_data, load_data, source_labels
from ..data.emoji_groups import groups_missing_hint
from ..encoders import make_encoder
from .methods import fit_method
from .protocol import Embeddings, anchor_split, gallery_mask
from .report import mean_over

logger = logging.getLogger(__name__)

TOP_KS = (1, 5)  # the k of the reported top-k accuracies
TIE_TOL = 1e-6  # a class scoring within this of the true one ties with it (as in ranks_of_truth)

Encode = Callable[[list[str]], np.ndarray]
# method -> label column -> figure -> value, for one seed
ClassifyMetrics = dict[str, dict[str, dict[str, float]]]


@dataclass
class Labels:
    """Label columns of the data by item id: ``columns[name][i]`` is the label of item ``ids[i]``."""

    ids: list[str]
    columns: dict[str, list[Any]]


@dataclass
class LabelColumn:
    """One label column aligned with the embeddings' rows: class names and each row's class (-1: no label)."""

    name: str
    classes: list[str]
    y: np.ndarray


def class_ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """0-based rank of the true class in each row of ``scores`` (items x classes), counting ties against us.

    Pessimistic on ties, as :func:`ranks_of_truth`: a class scoring equal to the true one ranks ahead of it,
    so a method that scores many classes alike cannot look better than it is.
    """
    true = scores[np.arange(len(scores)), truth]
    return (scores >= true[:, None] - TIE_TOL).sum(axis=1) - 1


def top_k_accuracy(ranks: np.ndarray, ks: Sequence[int] = TOP_KS) -> dict[str, float]:
    """Fraction of items whose true class is among the first k, for each k: ``top1``, ``top5``."""
    return {f"top{k}": float(np.mean(ranks < k)) for k in ks}


def label_text(label: str) -> str:
    """A label as prompt words: '-' and '_' become spaces, so identifier-style names ("face-smiling",
    "hot_dog") read as words. Generic: applied to every label of every dataset alike."""
    return " ".join(label.replace("-", " ").replace("_", " ").split())


def check_prompts(prompts: Sequence[str]) -> None:
    """Refuse an empty template list, or a template that is not a format string with a ``{label}`` field only."""
    if not prompts:
        raise ValueError("eval.prompts is empty: give at least one template, e.g. '{label}'")
    for p in prompts:
        try:
            uses_label = p.format(label="\0a") != p.format(label="\0b")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"eval.prompts: {p!r} is not a template whose only field is {{label}} ({e!r})") from None
        if not uses_label:
            raise ValueError(f"eval.prompts: {p!r} has no {{label}} field, so every class would get the same prompt")


def class_vectors(encode: Encode, classes: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
    """Absolute text vectors of the classes, one row per class: the prompt ensemble's mean embedding.

    As in CLIP's prompt ensembles, every template is embedded for every class and the embeddings are
    averaged per class. A mean of several directions is shorter than each, so it is rescaled to the
    templates' mean norm: the class vector then sits where single encoder outputs (the anchors') do.
    With one template this is the template's embedding itself.
    """
    texts = [t.format(label=label_text(c)) for c in classes for t in prompts]
    x = np.asarray(encode(texts), dtype=np.float32).reshape(len(classes), len(prompts), -1)
    mean = x.mean(axis=1)
    scale = np.linalg.norm(x, axis=2).mean(axis=1) / np.maximum(np.linalg.norm(mean, axis=1), 1e-12)
    return mean * scale[:, None]


def prompt_encoder(cfg: Config) -> Encode:
    """The text encoder that embedded the items' captions (``load_embeddings``), as a function of prompts."""
    enc = make_encoder(cfg, "text", cfg.text_encoders.get(cfg.data.languages[0]))
    return lambda texts: enc.encode(texts, batch_size=cfg.batch_size)


def label_columns(cfg: Config) -> list[str]:
    """The columns to classify: ``eval.label_columns``, else the source's own (``data.label_column`` is kept as
    ``label``; OpenMoji has ``group`` and ``subgroup``). One default, whether or not the config has ``eval:``."""
    return list(cfg.eval.label_columns) or source_labels(cfg.data.source)


def load_labels(cfg: Config) -> Labels:
    """The label columns of the configured data, with the item ids; checked here, before any model loads."""
    ds = load_data(cfg.data)
    names = label_columns(cfg)
    missing = [c for c in names if c not in ds.column_names]
    if missing:
        hint = " or data.label_column" if cfg.data.source == "hf" else ""
        raise ValueError(f"the {cfg.data.source!r} data has no label column {missing} (its columns: "
                         f"{', '.join(ds.column_names)}); set eval.label_columns (--labels){hint}")
    labels = Labels(list(ds["id"]), {c: list(ds[c]) for c in names})
    for name, cells in labels.columns.items():
        if all(_label(v, name, i) is None for v, i in zip(cells, labels.ids)):
            hint = f"; {groups_missing_hint()}" if cfg.data.source == "openmoji" else ""
            raise ValueError(f"label column {name!r} of the {cfg.data.source!r} data has no non-empty label{hint}")
    return labels


def _label(value: Any, column: str, item_id: str) -> str | None:
    """A cell as a class name; None for a missing or blank label (the item is left out of that column)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (str, int, float, np.integer, np.floating)) and not isinstance(value, bool):
        text = str(value).strip()
        return text or None
    raise ValueError(f"label column {column!r}, item {item_id!r}: a label must be a string or a number, "
                     f"got {type(value).__name__}")


def align_labels(labels: Labels, ids: Sequence[str], columns: Sequence[str]) -> list[LabelColumn]:
    """Each label column, aligned by id with the embedded items ``ids`` (never by position).

    Classes are every distinct non-empty label of the column, over all items: the class set is known
    before the split, as in zero-shot classification.
    """
    if len(set(labels.ids)) != len(labels.ids):
        raise ValueError("the label rows have duplicate ids, so labels cannot be matched to items")
    pos = {item_id: k for k, item_id in enumerate(labels.ids)}
    unlabelled = [i for i in ids if i not in pos]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} embedded items have no label row (e.g. {unlabelled[0]!r}): "
                         "the labels and the embeddings come from different data")
    order = [pos[i] for i in ids]
    assert [labels.ids[k] for k in order] == list(ids)  # aligned by id
    out = []
    for name in columns:
        if name not in labels.columns:
            raise ValueError(f"no label column {name!r}; label columns: {', '.join(labels.columns)}")
        cells = labels.columns[name]
        values = [_label(cells[k], name, ids[j]) for j, k in enumerate(order)]
        classes = sorted({v for v in values if v is not None})
        if not classes:
            raise ValueError(f"label column {name!r} has no non-empty label among the embedded items")
        index = {c: n for n, c in enumerate(classes)}
        out.append(LabelColumn(name, classes, np.array([index[v] if v is not None else -1 for v in values])))
    return out


def classify_split(
    emb: Embeddings, anchor_idx: np.ndarray, methods: list[str], cfg: Config, seed: int,
    columns: list[LabelColumn], class_vecs: dict[str, np.ndarray],
) -> ClassifyMetrics:
    """Fit every method on one anchor set and classify every labelled non-anchor image, per label column."""
    mask = gallery_mask(len(emb.ids), anchor_idx)
    out: ClassifyMetrics = {}
    for name in methods:
        space = fit_method(name, emb.text[anchor_idx], emb.image[anchor_idx], cfg.projector, seed, blocks=emb.blocks)
        images = space.image(emb.image[mask])
        out[name] = {}
        for col in columns:
            y = col.y[mask]
            keep = y >= 0
            if not keep.any():
                raise ValueError(f"label column {col.name!r}: no labelled item is left once the anchors are "
                                 f"taken out (seed {seed}); anchors are never test items")
            scores = images[keep] @ space.text(class_vecs[col.name]).T
            warn_ties(scores, y[keep], f"{name} on {col.name!r} (seed {seed})")
            out[name][col.name] = {**top_k_accuracy(class_ranks(scores, y[keep])), "test_items": int(keep.sum())}
    return out


# Share of items whose true class ties with another class above which the top-k figures say more about the ties
# than about the method (ties count against it: see class_ranks).
TIED_SHARE = 0.25


def warn_ties(scores: np.ndarray, truth: np.ndarray, what: str) -> float:
    """Warn when many items' true class ties with others: the pessimistic ranks then read as a failure.

    A sparse method with few anchors (ASIF keeps 5% of them: 1 of 10) gives most classes the same, often zero,
    score, so top-5 can read 0.000 though no class was ranked at all. Returns the tied share.
    """
    true = scores[np.arange(len(scores)), truth]
    tied = float(np.mean((np.abs(scores - true[:, None]) <= TIE_TOL).sum(axis=1) > 1)) if len(scores) else 0.0
    if tied > TIED_SHARE:
        logger.warning("%s: %.0f%% of the items score their true class equal to another one; ties count against "
                       "the method, so its top-k figures mostly measure ties (too few anchors for a sparse method?)",
                       what, 100 * tied)
    return tied


def _aggregate(runs: list[ClassifyMetrics], columns: list[LabelColumn]) -> dict[str, dict[str, Any]]:
    """Method -> label column -> mean figures over seeds, ``std``, and the class and item counts."""
    out: dict[str, dict[str, Any]] = {}
    for method in runs[0]:
        out[method] = {}
        for col in columns:
            per_seed = [r[method][col.name] for r in runs]
            scores = [{k: v for k, v in s.items() if k != "test_items"} for s in per_seed]
            out[method][col.name] = {
                **mean_over(scores),
                "std": mean_over(scores, np.std),
                "classes": len(col.classes),
                # mean over seeds: it differs between seeds only when anchors take unlabelled items
                "test_items": int(round(float(np.mean([s["test_items"] for s in per_seed])))),
                "unlabelled": int((col.y < 0).sum()),
            }
    return out


RETRIEVAL_ONLY = ("anchor_counts", "languages", "plot_dir")  # eval options that classification does not use


def classify_report(
    cfg: Config, emb: Embeddings, labels: Labels | None = None, encode: Encode | None = None
) -> dict[str, Any]:
    """The ``relspace eval --task classify`` report: relspace and every baseline on the same seeded splits.

    Args:
        cfg: the config; ``eval.label_columns`` and ``eval.prompts`` say what to classify and how.
        emb: the items' absolute vectors (``emb.text`` fits the methods' text side on the anchors).
        labels: the label columns by id; None reads them from the configured data.
        encode: embeds prompt strings; None uses the configured ``text_encoder``, the one behind ``emb.text``.

    Returns:
        The JSON-ready report: ``classify.<label column>`` with ``top1``, ``top5`` (mean over seeds),
        ``std``, ``classes``, ``test_items`` and ``unlabelled`` for relspace, the same under
        ``baselines.<name>.classify``, and ``anchors``, ``items``, ``seeds``, ``prompts``.
    """
    check_prompts(cfg.eval.prompts)
    if cfg.eval.swap_text_encoder or cfg.eval.swap_image_encoder:
        raise ValueError("eval.task classify does not run encoder swaps; unset eval.swap_text_encoder/"
                         "swap_image_encoder")
    ignored = [k for k in RETRIEVAL_ONLY if getattr(cfg.eval, k)]
    if ignored:
        logger.warning("eval.task classify ignores the retrieval options %s", ", ".join(f"eval.{k}" for k in ignored))
    columns = align_labels(labels if labels is not None else load_labels(cfg), emb.ids, label_columns(cfg))
    encode = encode or prompt_encoder(cfg)
    class_vecs = {c.name: class_vectors(encode, c.classes, cfg.eval.prompts) for c in columns}
    methods = ["relspace"] + [b for b in cfg.eval.baselines if b != "relspace"]
    seeds = [cfg.anchors.seed + s for s in range(cfg.eval.seeds)]
    runs = [classify_split(emb, anchor_split(emb, cfg, cfg.anchors.count, seed), methods, cfg, seed, columns,
                           class_vecs) for seed in seeds]
    res = _aggregate(runs, columns)
    return {
        "task": "classify",
        "method": "relspace",
        "projector": dict(vars(cfg.projector)),
        "classify": res["relspace"],
        "baselines": {m: {"classify": res[m]} for m in methods if m != "relspace"},
        "anchors": cfg.anchors.count,
        "anchor_strategy": cfg.anchors.strategy,
        "items": len(emb.ids),
        "seeds": seeds,
        "label_columns": [c.name for c in columns],
        "prompts": list(cfg.eval.prompts),
        "encoders": {"text": cfg.text_encoder, "image": cfg.image_encoder},
        "data": describe_data(cfg.data),
    }
