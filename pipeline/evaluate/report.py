"""The eval report: figures aggregated over seeds, and its markdown and JSON renderings."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from .metrics import DIRECTIONS

# method -> direction -> metric -> value, for one seed
SplitMetrics = dict[str, dict[str, dict[str, float]]]


def mean_over(runs: list[dict[str, Any]], stat: Callable[[list[float]], Any] = np.mean) -> dict[str, Any]:
    """One figure per key from one dict per seed, rounded to 4 places; a key that is None stays None."""
    return {m: None if runs[0][m] is None else round(float(stat([r[m] for r in runs])), 4) for m in runs[0]}


def aggregate(runs: list[SplitMetrics]) -> dict[str, dict[str, Any]]:
    """Mean over seeds per method and direction, with the standard deviation under ``std``."""
    out: dict[str, dict[str, Any]] = {}
    for method in runs[0]:
        per_dir = {d: [r[method][d] for r in runs] for d in runs[0][method]}
        res: dict[str, Any] = {"std": {d: mean_over(rs, np.std) for d, rs in per_dir.items()}}
        res.update({d: mean_over(rs) for d, rs in per_dir.items()})
        out[method] = res
    return out


def mean_nested(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Mean over seeds of a two-level dict (e.g. space -> measure)."""
    return {key: mean_over([r[key] for r in runs]) for key in runs[0]}


def format_table(report: dict[str, Any]) -> str:
    """A markdown table: one row per method, R@1/R@5/R@10/MRR/MedR for each direction (retrieval), or
    top-1/top-5 for each label column (classification)."""
    if report.get("task") == "classify":
        return format_classify_table(report)
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


def format_classify_table(report: dict[str, Any]) -> str:
    """The classification report as markdown: one row per method, top-1/top-5 (mean ± std) per label column."""
    cols = list(report["classify"])
    figures = [f for f in report["classify"][cols[0]]["std"]]
    head = "| method | " + " | ".join(f"{c} {f}" for c in cols for f in figures) + " |"
    lines = [head, "|" + "---|" * (1 + len(cols) * len(figures))]
    rows = [("relspace", report["classify"])] + [(m, r["classify"]) for m, r in report["baselines"].items()]
    for name, res in rows:
        lines.append(f"| {name} | " + " | ".join(f"{_fmt(res[c][f])} ± {_fmt(res[c]['std'][f])}"
                                                 for c in cols for f in figures) + " |")
    rel = report["classify"]
    classes = "; ".join(f"{c}: {rel[c]['classes']} classes, {rel[c]['test_items']} test items"
                        + (f" ({rel[c]['unlabelled']} items without a label left out)" if rel[c]["unlabelled"] else "")
                        for c in cols)
    caption = (
        f"{report['anchors']} {report['anchor_strategy']} anchors (never test items), seeds {report['seeds']}, "
        f"text {report['encoders']['text']}, image {report['encoders']['image']}, prompts {report['prompts']}; "
        f"{classes}"
    )
    return "\n".join(lines) + f"\n\n{caption}"


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A markdown table of sweep rows."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols) + " |"
              for r in rows]
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return f"{v:.1f}" if v >= 2 else f"{v:.3f}"


def dumps(report: dict[str, Any]) -> str:
    """The report as indented JSON (``relspace eval --json``)."""
    return json.dumps(report, indent=2, ensure_ascii=False)
