"""Retrieval and cross-space measures: rank of the truth (aligned or by owner), R@K / MRR / MedR, Jaccard@k."""

from __future__ import annotations

import numpy as np

from ..space.relative import l2_normalize

# direction -> (query modality, gallery modality)
DIRECTIONS = {"t2i": ("text", "image"), "i2t": ("image", "text")}
RANK_CHUNK = 2048  # query rows scored at once: bounds the score matrix at RANK_CHUNK x gallery


def ranks_of_truth(xq: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """0-based rank of gallery row i for query i (the pairs are aligned), counting ties against us."""
    aligned = np.arange(len(xq))
    return ranks_of_owner(xq, xb, aligned, aligned)


def ranks_of_owner(xq: np.ndarray, xb: np.ndarray, owner_q: np.ndarray, owner_b: np.ndarray) -> np.ndarray:
    """0-based rank of each query's best true gallery row: a row with the same owner (item), ties against us.

    This is the standard protocol for several captions per image (COCO, Flickr30k): a caption query finds
    its own image, and an image query is answered as soon as any of its captions is found; the rank counts
    only the rows of other items. Pessimistic on ties: a row of another item scoring equal to the true one
    ranks ahead of it, so a method that gives many rows the same score (sparse vectors, chance) cannot
    look better than it is.
    """
    owner_q, owner_b = np.asarray(owner_q), np.asarray(owner_b)
    ranks = np.empty(len(xq), dtype=np.int64)
    for s in range(0, len(xq), RANK_CHUNK):
        scores = xq[s : s + RANK_CHUNK] @ xb.T
        same = owner_q[s : s + RANK_CHUNK, None] == owner_b[None, :]
        best_true = np.where(same, scores, -np.inf).max(axis=1, keepdims=True)
        ranks[s : s + RANK_CHUNK] = ((scores >= best_true - 1e-6) & ~same).sum(axis=1)
    return ranks


def retrieval_metrics(ranks: np.ndarray, ks: list[int]) -> dict[str, float]:
    """R@K, MRR and median rank (1-based) from 0-based ranks of the true match."""
    out = {f"R@{k}": float(np.mean(ranks < k)) for k in ks}
    out["MRR"] = float(np.mean(1.0 / (ranks + 1)))
    out["MedR"] = float(np.median(ranks + 1))
    return out


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
        found = retrieval_metrics(ranks_of_truth(a, b), [1])
        out.update({"MRR": round(found["MRR"], 4), "R@1": round(found["R@1"], 4),
                    "cosine": round(float(np.mean(np.einsum("ij,ij->i", a, b))), 4)})
    return out
