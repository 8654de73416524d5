"""The one rule that fits projectors: every space of one anchor set, with the anchor weights they share.

Build, reanchor and every relative method of eval fit through :func:`fit_projectors`. Before it existed,
three loops fitted projectors and only one passed the anchor weights, so ``projector.anchor_weights``
worked in eval and failed in a build.

Anchor weights (``projector.anchor_weights: agreement``) are measured once per anchor set, on the primary
language's captions against the images, and every space is fitted with them. A fitted projector keeps the
weights it was fitted with (they are written to the projector file), so that a reanchor or an add reuses
them: recomputing them from a new encoder's anchors would change the image coder's penalty and silently
invalidate the stored image vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..config import ConfigError, ProjectorConfig
from ..core.progress import stage
from ..core.spaces import SpaceKey
from ..encoders import Encoder
from ..encoders.embed import Pooling
from .agreement import anchor_weights
from .anchors import AnchorSet
from .projectors import Blocks, Projector, make_projector

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)  # a space's name: a SpaceKey in an index, any label in eval


@dataclass(frozen=True)
class AnchorVectors:
    """One space's side of an anchor set: the embeddings of the anchors that have it."""

    vectors: np.ndarray  # (present, d) absolute embeddings, row i being anchor positions[i]
    blocks: Blocks | None = None  # an ensemble encoder's member layout (Encoder.blocks); None: one encoder
    positions: np.ndarray | None = None  # each row's index in the anchor set; None: every anchor, in order

    def covers(self, total: int) -> bool:
        """Whether row j is anchor j of a set of ``total``: every anchor present, in order."""
        return len(self.vectors) == total and (self.positions is None
                                               or np.array_equal(self.positions, np.arange(total)))


def check_options(options: ProjectorConfig) -> None:
    """Refuse projector options no fit can honour. A build (``check_config``) and eval call it before any model
    loads, and every fit does, so that all of them refuse the same settings with the same words."""
    if options.anchor_weights != "none" and options.ridge is None:
        raise ConfigError(f"projector.anchor_weights: {options.anchor_weights} weights the ridge coder's penalty, "
                          "and projector.ridge is null (no ridge coder): set projector.ridge, or anchor_weights: none")
    if options.topk is not None and options.topk < 1:
        raise ConfigError(f"projector.topk must be at least 1, or null to keep every similarity; got {options.topk}")


def embed_anchors(
    anchors: AnchorSet, encoder: Encoder, space: SpaceKey, pooling: Pooling = "mean", batch_size: int = 64
) -> AnchorVectors:
    """The anchors of an index's space, embedded by the encoder that serves it: its images, or its language's
    captions pooled per anchor (an anchor without a caption in that language is absent from the side)."""
    with stage(f"anchors {space}"):  # the bar reads "encode anchors text:es (minilm)"
        if space.modality == "image":
            return AnchorVectors(encoder.encode(anchors.images, batch_size=batch_size, ids=anchors.ids),
                                 encoder.blocks)
        assert space.lang is not None, "a text space of an index names its language"
        vecs, positions = anchors.text_vectors(encoder, space.lang, pooling, batch_size)
    if len(positions) < 2:
        raise ValueError(f"only {len(positions)} of {len(anchors)} anchors have a caption in {space.lang!r}; a "
                         "language needs at least 2 (drop it from data.languages or choose other anchors)")
    if len(positions) < len(anchors):
        logger.warning("%d of %d anchors have no caption in %r: that language's projector uses the other %d",
                       len(anchors) - len(positions), len(anchors), space.lang, len(positions))
    return AnchorVectors(vecs, encoder.blocks, positions)


def fit_projectors(
    sides: Mapping[K, AnchorVectors],
    options: ProjectorConfig,
    *,
    total: int,
    pair: tuple[K, K] | None = None,
    weights: np.ndarray | None = None,
) -> dict[K, Projector]:
    """One projector per side, each fitted on its anchors, all with the same anchor weights.

    Args:
        sides: the anchors as each space's encoder embedded them.
        options: the projector options.
        total: the size of the anchor set: a side with ``positions`` covers only part of it.
        pair: the (text, image) sides the anchor weights are measured on when ``options`` asks for them and
            ``weights`` is None: the primary language and the image.
        weights: the anchor set's (total,) weights to reuse, as :func:`stored_weights` reads them back.
    """
    check_options(options)
    if options.anchor_weights == "none":
        if weights is not None:  # weights that would be silently ignored point to a mixed-up caller
            raise ValueError("anchor weights given, but projector.anchor_weights is 'none'")
    elif weights is None:
        weights = _measure_weights(sides, options, pair, total)
    if weights is not None and np.shape(weights) != (total,):
        raise ValueError(f"expected {total} anchor weights (one per anchor of the set), got shape {np.shape(weights)}")
    return {name: _fit_one(side, options, total, weights) for name, side in sides.items()}


def stored_weights(projectors: Mapping[K, Projector]) -> np.ndarray | None:
    """The anchor set's weights that ``projectors`` were fitted with, read from a space that has every anchor
    (the image space always does); None when they were fitted without weights."""
    for p in projectors.values():
        if p.positions is None:
            return p.anchor_weights
    raise ValueError("no projector covers every anchor, so the anchor weights cannot be read back")


def _measure_weights(
    sides: Mapping[K, AnchorVectors], options: ProjectorConfig, pair: tuple[K, K] | None, total: int
) -> np.ndarray:
    if pair is None or pair[0] not in sides or pair[1] not in sides:
        raise ValueError(f"projector.anchor_weights={options.anchor_weights!r} measures the weights on the text and "
                         "image anchors together: fit both sides at once, or pass the stored weights")
    text, image = sides[pair[0]], sides[pair[1]]
    for name, side in ((pair[0], text), (pair[1], image)):
        if not side.covers(total):  # agreement pairs row j of one side with row j of the other
            raise ValueError(f"projector.anchor_weights={options.anchor_weights!r} pairs every anchor's text with its "
                             f"image, but only {len(side.vectors)} of the {total} anchors are in {name}; choose "
                             "anchors that all have a caption in the primary language (data.languages[0])")
    w = anchor_weights(text.vectors, image.vectors, options)
    assert w is not None  # options.anchor_weights is not "none"
    logger.info("anchor weights (%s) measured on %s and %s: %.3g to %.3g", options.anchor_weights, pair[0],
                pair[1], float(w.min()), float(w.max()))
    return w


def _fit_one(side: AnchorVectors, options: ProjectorConfig, total: int, weights: np.ndarray | None) -> Projector:
    mine = None
    if weights is not None:  # a side without some anchors is weighted by its own anchors' weights
        mine = weights if side.positions is None else np.asarray(weights)[side.positions]
    return make_projector(options, side.blocks).fit(side.vectors, positions=side.positions, total=total, weights=mine)
