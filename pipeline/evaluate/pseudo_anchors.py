"""Pseudo-anchors from unpaired items (after Cannistraci et al., 2023, "Bootstrapping parallel anchors").

Captions and images that nobody paired are matched in the current relative space: a pair is a candidate when
each side is the other's nearest neighbour (mutual NN), ranked by its margin over the runner-up. Candidates
become extra anchors only above the smallest margin at which the candidates that a labelled dev split can
judge reach a precision gate; the dev labels choose that threshold and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .methods import SharedMaps

logger = logging.getLogger(__name__)


@dataclass
class Candidates:
    """Mutual nearest neighbours between a text pool and an image pool."""

    text: np.ndarray  # (p,) row of each pair's caption in the text pool
    image: np.ndarray  # (p,) row of its image in the image pool
    margin: np.ndarray  # (p,) the smaller of the two gaps: best score minus second best, per side


def mutual_neighbours(scores: np.ndarray) -> Candidates:
    """Pairs (t, i) with i the best image of caption t and t the best caption of image i, with their margins.

    Args:
        scores: (n_text, n_image) similarities; at least two rows and two columns, so a runner-up exists.
    """
    s = np.asarray(scores, np.float64)
    if s.ndim != 2 or min(s.shape) < 2:
        raise ValueError(f"mutual neighbours need at least 2 captions and 2 images, got scores of shape {s.shape}")
    best_i, best_t = s.argmax(axis=1), s.argmax(axis=0)
    t = np.flatnonzero(best_t[best_i] == np.arange(len(s)))
    i = best_i[t]
    top_row = np.sort(np.partition(s[t], -2, axis=1)[:, -2:], axis=1)  # each caption's two best images
    top_col = np.sort(np.partition(s[:, i], -2, axis=0)[-2:], axis=0)  # each image's two best captions
    margin = np.minimum(top_row[:, 1] - top_row[:, 0], top_col[1] - top_col[0])
    return Candidates(t, i, margin)


def gate_margin(margin: np.ndarray, correct: np.ndarray, precision: float, min_labelled: int) -> float | None:
    """The smallest margin threshold at which the labelled candidates above it reach ``precision``.

    Args:
        margin: (p,) each candidate's margin.
        correct: (p,) 1 or 0 where the dev split can judge the pair, NaN where it cannot.
        precision: the gate, in (0, 1].
        min_labelled: fewer labelled candidates above a threshold than this are no evidence for it.

    Returns:
        The threshold, or None when no threshold passes the gate (add nothing).
    """
    if not 0 < precision <= 1:
        raise ValueError(f"precision gate must be in (0, 1], got {precision}")
    labelled = ~np.isnan(correct)
    order = np.argsort(-margin[labelled], kind="stable")
    hits = correct[labelled][order]
    cum = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    ok = np.flatnonzero((cum >= precision) & (np.arange(1, len(hits) + 1) >= min_labelled))
    return None if not len(ok) else float(margin[labelled][order][ok[-1]])


@dataclass
class Round:
    """What one bootstrap round found and added."""

    candidates: int  # mutual nearest neighbours among the unused pool items
    labelled: int  # of them, the ones the dev split can judge
    threshold: float | None  # the margin the gate chose; None: nothing passed
    dev_precision: float  # precision of the labelled candidates at or above the threshold (nan: none)
    added: int  # pairs added as anchors
    added_text: np.ndarray  # (added,) their rows in the text pool
    added_image: np.ndarray  # (added,) their rows in the image pool


Fit = Callable[[np.ndarray, np.ndarray], SharedMaps]  # parallel anchors (text, image) -> a fitted method
Judge = Callable[[np.ndarray, np.ndarray], np.ndarray]  # pool rows (text, image) -> 1, 0 or NaN per pair


def bootstrap(fit: Fit, at: np.ndarray, ai: np.ndarray, pool_text: np.ndarray, pool_image: np.ndarray,
              judge: Judge, *, precision: float, rounds: int, min_labelled: int = 10,
              ) -> tuple[np.ndarray, np.ndarray, list[Round]]:
    """Grow the parallel anchors (``at``, ``ai``) with gated mutual-NN pairs from unpaired pools, ``rounds`` times.

    Each round refits on the anchors so far and mines only pool items not yet added.

    Returns:
        The anchors' text and image embeddings (the real ones first) and one :class:`Round` per round run.
    """
    at, ai = np.asarray(at, np.float32), np.asarray(ai, np.float32)
    free_t, free_i = np.ones(len(pool_text), bool), np.ones(len(pool_image), bool)
    history: list[Round] = []
    for r in range(rounds):
        space = fit(at, ai)
        rows_t, rows_i = np.flatnonzero(free_t), np.flatnonzero(free_i)
        if min(len(rows_t), len(rows_i)) < 2:
            break
        cand = mutual_neighbours(space.text(pool_text[rows_t]) @ space.image(pool_image[rows_i]).T)
        t, i = rows_t[cand.text], rows_i[cand.image]
        correct = np.asarray(judge(t, i), np.float64)
        threshold = gate_margin(cand.margin, correct, precision, min_labelled)
        take = np.zeros(len(t), bool) if threshold is None else cand.margin >= threshold
        judged = take & ~np.isnan(correct)
        history.append(Round(len(t), int((~np.isnan(correct)).sum()), threshold,
                             float(correct[judged].mean()) if judged.any() else float("nan"),
                             int(take.sum()), t[take], i[take]))
        logger.info("round %d: %d mutual NN, %d judged, threshold %s, %d added", r, len(t), history[-1].labelled,
                    threshold, int(take.sum()))
        if not take.any():
            break
        at, ai = np.vstack([at, pool_text[t[take]]]), np.vstack([ai, pool_image[i[take]]])
        free_t[t[take]], free_i[i[take]] = False, False
    return at, ai, history
