"""Evaluation on seeded disjoint splits, every method in one pass: retrieval (R@K / MRR / median rank)
and zero-shot classification (top-1 / top-5).

``metrics`` scores ranks, ``protocol`` makes the splits and scores every method on one of them,
``classify`` runs zero-shot classification on the same splits, ``run`` assembles the ``relspace eval``
report, ``sweep`` runs a grid of configs and ``report`` aggregates over seeds and renders.
"""

from __future__ import annotations

from .classify import LabelColumn, Labels, align_labels, class_ranks, classify_report, load_labels, top_k_accuracy
from .metrics import DIRECTIONS, cross_space_measures, knn_sets, ranks_of_truth, retrieval_metrics
from .protocol import (
    Embeddings,
    Ranks,
    SplitScores,
    anchor_split,
    cross_space,
    evaluate_split,
    gallery_mask,
    language_table,
    load_embeddings,
)
from .report import aggregate, dumps, format_rows, format_table
from .run import evaluate, evaluate_with_ranks, measured_directions
from .sweep import sweep

__all__ = [
    "DIRECTIONS",
    "Embeddings",
    "LabelColumn",
    "Labels",
    "Ranks",
    "SplitScores",
    "aggregate",
    "align_labels",
    "class_ranks",
    "classify_report",
    "anchor_split",
    "cross_space",
    "cross_space_measures",
    "dumps",
    "evaluate",
    "evaluate_split",
    "evaluate_with_ranks",
    "format_rows",
    "format_table",
    "gallery_mask",
    "knn_sets",
    "language_table",
    "load_embeddings",
    "load_labels",
    "measured_directions",
    "ranks_of_truth",
    "retrieval_metrics",
    "sweep",
    "top_k_accuracy",
]
