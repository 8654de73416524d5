"""The evaluation protocol: embeddings, seeded disjoint anchor/gallery splits, and scoring every method on one split."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..config import Config
from ..data import cache_dir, caption_rows, captions, load_data
from ..encoders import make_encoder
from ..encoders.embed import embed_dataset, pool_captions
from ..space.agreement import anchor_weights
from ..space.anchors import SELECTORS, check_anchor_count, select_anchors, selection_features
from ..space.fit import AnchorVectors, fit_projectors
from ..space.projectors import Blocks
from .methods import fit_method
from .metrics import DIRECTIONS, cross_space_measures, ranks_of_owner, retrieval_metrics
from .report import SplitMetrics, mean_over

# method -> direction -> 0-based rank of the true match for each gallery item, for one split
Ranks = dict[str, dict[str, np.ndarray]]


@dataclass
class Embeddings:
    """Absolute vectors of every item, aligned by row: the input every method is fitted and scored on."""

    text: np.ndarray  # (n, d) each item's captions pooled (their mean): an anchor's text side
    image: np.ndarray  # (n, d) each item's image
    ids: list[str]
    captions: np.ndarray | None = None  # (c, d) every caption, the text queries; None: one per item, as text
    caption_items: np.ndarray | None = None  # (c,) the item of each caption
    text_blocks: Blocks | None = None  # an ensemble's member layout of the text columns (Encoder.blocks); None: one
    image_blocks: Blocks | None = None  # likewise for the image columns

    @property
    def blocks(self) -> tuple[Blocks | None, Blocks | None]:
        """(text, image) member layouts, as :func:`~pipeline.evaluate.methods.fit_method` takes them."""
        return self.text_blocks, self.image_blocks

    def get(self, modality: str) -> tuple[np.ndarray, Blocks | None]:
        """One modality's per-item vectors and their member layout."""
        return getattr(self, modality), getattr(self, f"{modality}_blocks")

    def caption_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every caption and its item (one per item when no separate captions were given)."""
        if self.captions is None or self.caption_items is None:
            return self.text, np.arange(len(self.ids))
        return self.captions, self.caption_items


class SplitScores(NamedTuple):
    """Every method scored on one split: the figures, and the ranks they were computed from."""

    metrics: SplitMetrics
    ranks: Ranks


def _data(cfg: Config) -> tuple[Any, Any]:
    """The configured dataset and its embedding cache directory."""
    return load_data(cfg.data), cache_dir(cfg.data) / "embeddings"


def _embed(
    cfg: Config, ds: Any, cache: Any, modality: str, spec: str | None, lang: str | None = None
) -> tuple[np.ndarray, Blocks]:
    """One modality of ``ds`` through the encoder ``spec`` (None: the configured one), cached; and its layout."""
    enc = make_encoder(cfg, modality, spec)
    return embed_dataset(ds, enc, lang=lang, batch_size=cfg.batch_size, cache=cache), enc.blocks


def _caption_items(ds: Any, lang: str) -> np.ndarray:
    """The item of each caption row in ``lang``, as :func:`embed_dataset` orders them."""
    return caption_rows(captions(ds, lang))[0]


def load_embeddings(cfg: Config, text_encoder: str | None = None, image_encoder: str | None = None) -> Embeddings:
    """Load the configured data and embed captions (primary language) and images, through the cache.

    ``text_encoder``/``image_encoder`` replace the configured specs (the encoder-swap evaluation).
    """
    ds, cache = _data(cfg)
    for count in {cfg.anchors.count, *cfg.eval.anchor_counts}:
        check_anchor_count(count, len(ds))  # before anything is embedded
    primary = cfg.data.languages[0]
    spec = text_encoder or cfg.text_encoders.get(primary)  # the encoder the index uses for this language
    (caps, text_blocks), items = _embed(cfg, ds, cache, "text", spec, lang=primary), _caption_items(ds, primary)
    pooled, _ = pool_captions(caps, items, range(len(ds)), cfg.anchors.caption_pooling)  # every item has one
    image, image_blocks = _embed(cfg, ds, cache, "image", image_encoder)
    return Embeddings(pooled, image, list(ds["id"]), caps, items, text_blocks, image_blocks)


def gallery_mask(n: int, anchor_idx: np.ndarray) -> np.ndarray:
    """Boolean mask of the n items that are not anchors: the gallery, disjoint from the anchors by construction."""
    mask = np.ones(n, dtype=bool)
    mask[anchor_idx] = False
    return mask


def text_queries(emb: Embeddings, anchor_idx: np.ndarray) -> int:
    """How many captions query in a split: every caption of every gallery item."""
    return int(gallery_mask(len(emb.ids), anchor_idx)[emb.caption_rows()[1]].sum())


def anchor_split(emb: Embeddings, cfg: Config, count: int, seed: int) -> np.ndarray:
    """Anchor indices for one seed; every other item is the gallery, so the split is always disjoint.

    A paired selector (one that reads the image-caption pairing) is refused here: choosing among all items it
    would have looked at every gallery pair. :func:`pool_split` is its protocol.
    """
    if SELECTORS.get(cfg.anchors.strategy).paired:
        raise ValueError(f"anchor strategy {cfg.anchors.strategy!r} reads the image-caption pairing of its "
                         "candidates, so among all items it would see the gallery; evaluate it with pool_split "
                         "(experiments/anchors.py), which keeps the candidates out of the gallery")
    return select_anchors(len(emb.ids), count, strategy=cfg.anchors.strategy, seed=seed,
                          features=lambda: selection_features(emb.image, emb.text))


def pool_split(emb: Embeddings, strategy: str, count: int, pool: int, seed: int) -> tuple[Embeddings, np.ndarray]:
    """A split whose selector sees only a seeded candidate pool, and whose gallery is every item outside it.

    The pool depends on ``seed`` and ``pool`` alone, so every strategy is scored on the same gallery; a pool
    candidate that is not chosen is neither anchor nor gallery.

    Returns:
        The embeddings of the chosen anchors followed by the gallery, and the anchors' rows in them (for
        :func:`evaluate_split`, whose gallery is the non-anchor rows).
    """
    n = len(emb.ids)
    if not count <= pool < n:
        raise ValueError(f"a candidate pool of {pool} items must hold the {count} anchors and leave a gallery "
                         f"among the {n} items")
    cand = np.sort(np.random.default_rng([seed, pool]).choice(n, size=pool, replace=False))
    chosen = cand[select_anchors(pool, count, strategy=strategy, seed=seed,
                                 features=lambda: selection_features(emb.image[cand], emb.text[cand]),
                                 spaces=lambda: (emb.image[cand], emb.text[cand]))]
    keep = np.concatenate([chosen, np.flatnonzero(~np.isin(np.arange(n), cand))])
    old_rows = np.full(n, -1, dtype=np.int64)
    old_rows[keep] = np.arange(len(keep))
    caps, items = emb.caption_rows()
    kept_caps = old_rows[items] >= 0
    sub = dataclasses.replace(emb, text=emb.text[keep], image=emb.image[keep], ids=[emb.ids[i] for i in keep],
                              captions=caps[kept_caps], caption_items=old_rows[items[kept_caps]])
    return sub, np.arange(count)


def evaluate_split(
    emb: Embeddings, anchor_idx: np.ndarray, methods: list[str], cfg: Config, seed: int, directions: Sequence[str]
) -> SplitScores:
    """Fit every method on one anchor set and score it on every non-anchor item, in each of ``directions``.

    Every caption of a gallery item is a text query (t2i), and an image is answered by any of its captions
    (i2t); with one caption per item this is the plain aligned protocol.
    """
    mask = gallery_mask(len(emb.ids), anchor_idx)
    caps, items = emb.caption_rows()
    owners = {"text": items[mask[items]], "image": np.flatnonzero(mask)}
    metrics: SplitMetrics = {}
    ranks: Ranks = {}
    for name in methods:
        space = fit_method(name, emb.text[anchor_idx], emb.image[anchor_idx], cfg.projector, seed, blocks=emb.blocks)
        mapped = {"text": space.text(caps[mask[items]]), "image": space.image(emb.image[mask])}
        ranks[name] = {d: ranks_of_owner(mapped[q], mapped[g], owners[q], owners[g])
                       for d, (q, g) in DIRECTIONS.items() if d in directions}
        metrics[name] = {d: retrieval_metrics(r, cfg.eval.ks) for d, r in ranks[name].items()}
    return SplitScores(metrics, ranks)


def language_table(cfg: Config, native: Embeddings, seeds: list[int]) -> dict[str, dict[str, dict[str, float]]]:
    """Text->image per query language: through that language's anchor captions ("translated") and,
    as the baseline, through the English anchor captions ("english_anchors")."""
    missing = [lang for lang in cfg.eval.languages if lang not in cfg.data.languages]
    if missing:
        raise ValueError(f"eval.languages {missing} are not in data.languages {cfg.data.languages}")
    ds, cache = _data(cfg)
    ks = [k for k in (1, 10) if k in cfg.eval.ks] or cfg.eval.ks[:1]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for lang in cfg.eval.languages:
        (x, blocks), items = _embed(cfg, ds, cache, "text", cfg.text_encoders.get(lang), lang=lang), \
            _caption_items(ds, lang)
        # The baseline's anchors are the primary captions, embedded by the encoder that embeds this language.
        english = native.text
        if lang in cfg.text_encoders:
            primary = cfg.data.languages[0]
            english = pool_captions(_embed(cfg, ds, cache, "text", cfg.text_encoders[lang], lang=primary)[0],
                                    _caption_items(ds, primary), range(len(ds)), cfg.anchors.caption_pooling)[0]
        runs: dict[str, list[dict[str, float]]] = {"translated": [], "english_anchors": []}
        for seed in seeds:
            idx = anchor_split(native, cfg, cfg.anchors.count, seed)
            mask = gallery_mask(len(native.ids), idx)
            # A missing translation: the item is no query, and the anchor is left out of that language's side.
            vecs, positions = pool_captions(x, items, idx, cfg.anchors.caption_pooling)
            fitted = fit_projectors(
                {"image": AnchorVectors(native.image[idx], native.image_blocks),
                 "translated": AnchorVectors(vecs, blocks, positions),
                 "english_anchors": AnchorVectors(english[idx], blocks)},
                cfg.projector, total=len(idx), weights=index_weights(native, idx, cfg))
            gallery = fitted["image"].transform(native.image[mask])
            for name in runs:
                ranks = ranks_of_owner(fitted[name].transform(x[mask[items]]), gallery, items[mask[items]],
                                       np.flatnonzero(mask))
                runs[name].append({**retrieval_metrics(ranks, ks), "anchors": float(fitted[name].present),
                                   "queries": float(len(ranks))})
        table[lang] = {name: mean_over(rs) for name, rs in runs.items()}
    return table


def index_weights(native: Embeddings, anchor_idx: np.ndarray, cfg: Config) -> np.ndarray | None:
    """The anchor weights an index built on these anchors stores: measured on the native primary captions and
    images, and kept across an encoder swap (see :mod:`pipeline.space.fit`); None when the option is off."""
    return anchor_weights(native.text[anchor_idx], native.image[anchor_idx], cfg.projector)


def cross_space(
    one: tuple[np.ndarray, Blocks | None], two: tuple[np.ndarray, Blocks | None], anchor_idx: np.ndarray, cfg: Config,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Cross-space measures on the non-anchor items of two encoders' vectors (each with its member layout),
    absolute and relative side by side; ``weights`` are the anchor weights (:func:`index_weights`)."""
    (x1, blocks1), (x2, blocks2) = one, two
    mask = gallery_mask(len(x1), anchor_idx)
    fitted = fit_projectors({1: AnchorVectors(x1[anchor_idx], blocks1), 2: AnchorVectors(x2[anchor_idx], blocks2)},
                            cfg.projector, total=len(anchor_idx), weights=weights)
    p1, p2 = fitted[1], fitted[2]
    k = cfg.eval.cross_space_k
    return {
        "absolute": cross_space_measures(x1[mask], x2[mask], k),
        "relative": cross_space_measures(p1.transform(x1[mask]), p2.transform(x2[mask]), k),
    }
