"""PNG plots for ``relspace eval``: R@10 against anchor count per method, and the rank histogram."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .protocol import Ranks

logger = logging.getLogger(__name__)

# the rank histogram leaves out chance (flat) and the trained ridge reference, to keep it readable
HISTOGRAM_METHODS = ("relspace", "cosine", "asif", "procrustes")


def write_plots(report: dict[str, Any], ranks: Ranks, directions: Sequence[str], out: Path) -> list[str]:
    """Draw the plots the report supports; nothing is computed here but the figures.

    Args:
        report: the eval report; its ``curve`` (if any) gives the R@10-vs-anchors plot.
        ranks: method -> direction -> 0-based ranks of the true match, for the report's first seed.
        directions: the measured directions, one panel each.
        out: directory for the PNGs (created).

    Returns:
        The paths written.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "curve" in report:
        fig, axes = _panels(plt, len(directions))
        counts = sorted(report["curve"], key=int)
        for ax, d in zip(axes[0], directions):
            for method in report["curve"][counts[0]]:
                ax.plot([int(c) for c in counts], [report["curve"][c][method][d] for c in counts], marker="o",
                        label=method, linewidth=2.5 if method == "relspace" else 1.2)
            ax.set(title=f"{d}: R@10 vs anchors", xlabel="anchors", ylabel="R@10", ylim=(0, 1))
        written.append(_save(plt, fig, axes, out / "r10_vs_anchors.png"))

    fig, axes = _panels(plt, len(directions))
    for ax, d in zip(axes[0], directions):
        for method in [m for m in ranks if m in HISTOGRAM_METHODS]:
            r = ranks[method][d] + 1
            ax.hist(r, bins=_log_int_bins(len(r)), histtype="step", label=method, linewidth=1.5)
        ax.set(xscale="log", title=f"{d}: rank of the true match (seed {report['seeds'][0]})", xlabel="rank",
               ylabel="queries")
    written.append(_save(plt, fig, axes, out / "rank_histogram.png"))
    logger.info("wrote plots %s", ", ".join(written))
    return written


def _save(plt: Any, fig: Any, axes: Any, path: Path) -> str:
    """Grid, legend, layout, write, close: the same finish for every figure."""
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _panels(plt: Any, n: int) -> tuple[Any, Any]:
    """One panel per direction, side by side."""
    return plt.subplots(1, n, figsize=(5.5 * n, 4), squeeze=False)


def _log_int_bins(n: int, count: int = 30) -> np.ndarray:
    """Log-spaced bin edges that fall between integers, so no small-rank bin is empty by construction."""
    return np.unique(np.round(np.logspace(0, np.log10(n + 1), count))) - 0.5
