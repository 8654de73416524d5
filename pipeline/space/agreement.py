"""Cross-space agreement: how far an item's neighbourhoods agree between the text and the image space.

It drives the ``aligned`` anchor selector and the agreement-weighted ridge coder (``projector.anchor_weights``).
"""

from __future__ import annotations

import numpy as np

from ..config import ProjectorConfig
from .relative import l2_normalize

# An anchor whose neighbourhoods disagree across the modalities (agreement <= 0) still keeps a finite ridge
# penalty: 1/AGREEMENT_FLOOR times the mean weight's at most.
AGREEMENT_FLOOR = 0.05

# Agreement profiles are taken against at most this many reference candidates: a correlation over a couple
# of thousand similarities is stable, and the cost stays linear in the pool (50,000 candidates by default).
AGREEMENT_REFERENCES = 2048
AGREEMENT_CHUNK = 4096  # candidates scored at once: bounds memory at chunk x references floats per space


def cross_space_agreement(image: np.ndarray, text: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per item, how much its neighbourhoods agree across the two spaces (relreps' "best-aligned" anchors).

    An item's profile in a space is its centred cosine to a seeded set of reference items; the score is the
    Pearson correlation of its image profile with its text profile (its own entry left out), in [-1, 1].
    """
    if len(image) != len(text):
        raise ValueError(f"image and text vectors are not paired: {len(image)} vs {len(text)} rows")
    n = len(image)
    refs = np.sort(rng.choice(n, size=min(n, AGREEMENT_REFERENCES), replace=False))
    xs = [l2_normalize(x - x.mean(axis=0)) for x in (image, text)]
    scores = np.empty(n, dtype=np.float64)
    for start in range(0, n, AGREEMENT_CHUNK):
        rows = np.arange(start, min(n, start + AGREEMENT_CHUNK))
        own = rows[:, None] == refs[None, :]  # an item's similarity to itself agrees trivially: left out
        profiles = []
        for x in xs:
            s = (x[rows] @ x[refs].T).astype(np.float64)
            s[own] = np.nan
            s -= np.nanmean(s, axis=1, keepdims=True)
            profiles.append(np.nan_to_num(s) / np.maximum(np.sqrt(np.nansum(s**2, axis=1, keepdims=True)), 1e-12))
        scores[rows] = (profiles[0] * profiles[1]).sum(axis=1)
    return scores


def anchor_weights(at: np.ndarray, ai: np.ndarray, options: ProjectorConfig) -> np.ndarray | None:
    """Per-anchor weights of the ridge coder, computed once from BOTH modalities' anchors (row j of ``at`` and
    ``ai`` is anchor j), so that the text and image coders weight anchor j alike; None when the option is off.

    Float32, the precision the projector file keeps, so that a refit from stored weights (reanchor) uses the
    very weights the build used."""
    if options.anchor_weights == "none":
        return None
    agreement = cross_space_agreement(ai, at, np.random.default_rng(0))
    return np.clip(agreement, AGREEMENT_FLOOR, None).astype(np.float32)

