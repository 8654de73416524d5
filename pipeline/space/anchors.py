"""Anchor selection (a registry of strategies) and the parallel anchor set stored as parquet."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.hashing import hash_arrays
from ..core.io import read_parquet
from ..core.registry import Registry
from ..data import caption_list, caption_rows, captions, first_caption
from ..encoders.embed import Pooling, pool_captions
from .agreement import cross_space_agreement
from .relative import l2_normalize

if TYPE_CHECKING:
    from ..encoders import Encoder

logger = logging.getLogger(__name__)

# selector(n_items, count, rng, features) -> indices; features is None for strategies that need none, the
# joint features for ``needs_features`` ones, and the (image, text) pair of arrays for ``paired`` ones.
Selector = Callable[[int, int, np.random.Generator, Any], np.ndarray]


@dataclass(frozen=True)
class SelectorEntry:
    """A registered strategy, and whether it needs item features (the one place that decides it)."""

    select: Selector
    needs_features: bool
    # reads each candidate's image AND caption vectors, i.e. the pairing: an evaluation must keep its candidates
    # out of the gallery (pipeline.evaluate.protocol.pool_split), or the selector would have seen the answers
    paired: bool = False


SELECTORS: Registry[SelectorEntry] = Registry("anchor strategy")
Features = np.ndarray | Callable[[], np.ndarray]  # the features, or a function that computes them on demand
# the candidates' (image, text) vectors, row i of each being candidate i, or a function computing them
Spaces = tuple[np.ndarray, np.ndarray] | Callable[[], tuple[np.ndarray, np.ndarray]]


def register_selector(name: str, needs_features: bool = False, paired: bool = False) -> Callable[[Selector], Selector]:
    """Register ``selector(n_items, count, rng, features) -> indices``; say if it needs item features, or
    (``paired``) the candidates' image and text vectors apart."""

    def deco(select: Selector) -> Selector:
        SELECTORS.add(name, SelectorEntry(select, needs_features or paired, paired))
        return select

    return deco


def list_selectors() -> list[str]:
    return SELECTORS.names()


def check_anchor_count(count: int, n_items: int) -> None:
    """Refuse an anchor count the data cannot supply, before anything is embedded."""
    if count < 2:
        raise ValueError(f"anchors.count is {count}; a relative space needs at least 2 anchors")
    if count > n_items:
        suggestion = max(2, min(n_items // 3, 800))
        raise ValueError(
            f"cannot choose {count} anchors from {n_items} items: anchors are chosen from the items; set "
            f"anchors.count to at most {n_items} (e.g. {suggestion}, leaving the rest to search)"
        )


def select_anchors(
    n_items: int, count: int, *, strategy: str = "random", seed: int = 0, features: Features | None = None,
    spaces: Spaces | None = None,
) -> np.ndarray:
    """Choose ``count`` distinct item indices to serve as anchors.

    Args:
        n_items: how many items there are to choose from.
        count: how many anchors to choose.
        strategy: a registered selector name (see :func:`list_selectors`).
        seed: seeds the selector, so that a split can be reproduced.
        features: (n_items, d) vectors for geometry-aware strategies (kmeans, fps, stratified), or a
            function computing them: it is called only if the strategy needs features.
        spaces: the items' (image, text) vectors for paired strategies (aligned), or a function computing them.

    Returns:
        Sorted int64 indices.
    """
    entry = SELECTORS.get(strategy)
    check_anchor_count(count, n_items)
    feats: Any = None
    given = spaces if entry.paired else features
    if entry.needs_features:
        if given is None:
            what = "image and text vectors apart (spaces=)" if entry.paired else "features"
            raise ValueError(f"anchor strategy {strategy!r} needs item {what}")
        feats = given() if callable(given) else given
    idx = entry.select(n_items, count, np.random.default_rng(seed), feats)
    idx = np.unique(np.asarray(idx, dtype=np.int64))
    assert len(idx) == count, f"selector {strategy} returned {len(idx)} anchors, expected {count}"
    return idx


def selection_features(*spaces: np.ndarray) -> np.ndarray:
    """Features for geometry-aware selectors: each modality's unit vectors side by side, so anchors cover
    both spaces and neither dominates by its dimension or scale."""
    return np.hstack([l2_normalize(x) for x in spaces])


@register_selector("random")
def _random(n: int, count: int, rng: np.random.Generator, features: np.ndarray | None) -> np.ndarray:
    return rng.choice(n, size=count, replace=False)


def _kmeans_labels(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    # One centroid per anchor on a few hundred items is the point here, not a mistake: FAISS's warning
    # below 39 points per centroid ("please provide at least ... training points") is noise, so it is off.
    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    _, labels = km.index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return km.centroids, labels[:, 0]


@register_selector("kmeans", needs_features=True)
def _kmeans(n: int, count: int, rng: np.random.Generator, features: np.ndarray | None) -> np.ndarray:
    """The item nearest each of ``count`` spherical k-means centroids: anchors that cover the data."""
    x = l2_normalize(features)
    centroids, _ = _kmeans_labels(x, count, int(rng.integers(1 << 30)))
    sims = x @ centroids.T
    chosen: list[int] = []
    taken = np.zeros(n, dtype=bool)
    for c in np.argsort(-sims.max(axis=0)):  # most clear-cut centroids pick first
        for i in np.argsort(-sims[:, c]):
            if not taken[i]:
                taken[i] = True
                chosen.append(int(i))
                break
    return np.array(chosen)


@register_selector("fps", needs_features=True)
def _farthest_point(n: int, count: int, rng: np.random.Generator, features: np.ndarray | None) -> np.ndarray:
    """Greedy farthest-point sampling in cosine distance: anchors spread to the edges of the data."""
    x = l2_normalize(features)
    chosen = [int(rng.integers(n))]
    best = x @ x[chosen[0]]
    for _ in range(count - 1):
        best[chosen[-1]] = np.inf
        nxt = int(np.argmin(best))
        chosen.append(nxt)
        best = np.maximum(best, x @ x[nxt])
    return np.array(chosen)


def _strata(features: np.ndarray, count: int, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """Spherical k-means strata (about sqrt(count) of them), each with its share of ``count``: its members and
    a quota in proportion to its size."""
    x = l2_normalize(features)
    n = len(x)
    k = max(2, min(int(np.sqrt(count)), n // 2))
    _, labels = _kmeans_labels(x, k, int(rng.integers(1 << 30)))
    sizes = np.bincount(labels, minlength=k)
    quota = np.floor(sizes / n * count).astype(int)
    # hand the rounding remainder to the strata with the largest fractional parts
    rest = count - quota.sum()
    order = np.argsort(-(sizes / n * count - quota))
    quota[order[:rest]] += 1
    return [(np.flatnonzero(labels == s), int(q)) for s, q in enumerate(quota) if q]


@register_selector("stratified", needs_features=True)
def _stratified(n: int, count: int, rng: np.random.Generator, features: np.ndarray | None) -> np.ndarray:
    """Random within k-means strata, each stratum drawn in proportion to its size."""
    return np.concatenate([rng.choice(members, size=q, replace=False) for members, q in _strata(features, count, rng)])


@register_selector("aligned", paired=True)
def _aligned(n: int, count: int, rng: np.random.Generator, spaces: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The candidates whose image and caption neighbourhoods agree most: the pairs the relative space can trust."""
    return np.argsort(-cross_space_agreement(*spaces, rng), kind="stable")[:count]


@register_selector("aligned-stratified", paired=True)
def _aligned_stratified(
    n: int, count: int, rng: np.random.Generator, spaces: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """The best-aligned candidates of each joint-space k-means stratum, in proportion to its size: agreement
    alone piles the anchors into the large clusters both spaces agree on (experiments/README.md, Anchors)."""
    score = cross_space_agreement(*spaces, rng)
    strata = _strata(selection_features(*spaces), count, rng)
    return np.concatenate([members[np.argsort(-score[members], kind="stable")[:q]] for members, q in strata])


@dataclass
class AnchorSet:
    """A parallel anchor set: for each anchor an id, an image, and its captions per language."""

    ids: list[str]
    images: list[Any]  # encoded bytes or file paths, as the data source gave them
    captions: dict[str, list[list[str]]]  # language -> per anchor its captions (empty: no translation)

    def __post_init__(self) -> None:
        # One caption per anchor may be given as a plain string, as anchor sets were before lists.
        self.captions = {lang: [caption_list(c) for c in caps] for lang, caps in self.captions.items()}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def hash(self) -> str:
        """sha256 over ids, captions and image contents: equal hash, same anchors.

        A single caption hashes as itself and a missing one as "", so anchor files written before lists
        of captions keep their hash (captions are read stripped; one stored with surrounding spaces, which no
        built-in source wrote, would hash anew).
        """
        digests = [hashlib.sha256(_image_bytes(img)).hexdigest() for img in self.images]
        langs = sorted(self.captions)
        texts = ("\x1f".join(caps) for lang in langs for caps in self.captions[lang])
        return hash_arrays(*self.ids, *langs, *texts, *digests)

    @classmethod
    def from_dataset(cls, ds: Any, indices: Sequence[int], languages: Sequence[str]) -> AnchorSet:
        sub = ds.select(list(map(int, indices)))
        return cls(ids=list(sub["id"]), images=list(sub["image"]),
                   captions={lang: captions(sub, lang) for lang in languages})

    def text_vectors(
        self, encoder: Encoder, lang: str, pooling: Pooling = "mean", batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """The text side of the anchors in ``lang``: each anchor's captions embedded and pooled.

        Returns:
            (k, d) vectors of the k anchors that have a caption in ``lang``, and their positions.
        """
        rows, texts = caption_rows(self.captions[lang])
        vecs = encoder.encode(texts, batch_size=batch_size, ids=[self.ids[i] for i in rows])
        return pool_captions(vecs, rows, range(len(self)), pooling)

    def save(self, path: str | Path) -> None:
        """Write as parquet with images embedded as bytes, so an index directory is self-contained."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        langs = list(self.captions)
        table = pa.table(
            {
                "id": pa.array(self.ids, pa.string()),
                "image": pa.array([_image_bytes(i) for i in self.images], pa.binary()),
                "caption": pa.array([first_caption(caps) for caps in self.captions[langs[0]]], pa.string()),
                "captions": pa.array(
                    [{lang: self.captions[lang][i] for lang in langs} for i in range(len(self))],
                    pa.struct([(lang, pa.list_(pa.string())) for lang in langs]),
                ),
            }
        )
        pq.write_table(table, str(path))

    @classmethod
    def load(cls, path: str | Path) -> AnchorSet:
        table = read_parquet(path, "anchor file")  # a missing or damaged file is named, not left to pyarrow
        missing = {"id", "image", "captions"} - set(table.column_names)
        if missing:
            raise ValueError(f"anchor file {path} lacks columns {sorted(missing)}")
        caps = table.column("captions").to_pylist()
        langs = [f.name for f in table.schema.field("captions").type]
        return cls(
            ids=table.column("id").to_pylist(),
            images=table.column("image").to_pylist(),
            captions={lang: [caption_list(c[lang]) for c in caps] for lang in langs},
        )


def _image_bytes(image: Any) -> bytes:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, dict):
        return image.get("bytes") or Path(image["path"]).read_bytes()
    return Path(image).read_bytes()
