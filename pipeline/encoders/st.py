"""``st:<name|dir>``: sentence-transformers text encoders, by hub name or local directory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Encoder, register_encoder

logger = logging.getLogger(__name__)


class SentenceTransformerEncoder(Encoder):
    """Mean-pooled sentence embeddings, exactly as the model's own ``encode`` produces them."""

    modality = "text"

    def __init__(self, name: str, device: str):
        import sentence_transformers
        from sentence_transformers import SentenceTransformer

        self.spec = f"st:{name}"
        self.model = SentenceTransformer(name, device=device)
        getdim = getattr(self.model, "get_embedding_dimension", None) or (
            self.model.get_sentence_embedding_dimension
        )
        self._dim = int(getdim())
        self._version = f"sentence-transformers {sentence_transformers.__version__}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def version(self) -> str:
        return self._version

    def encode(
        self,
        items: Sequence[Any],
        *,
        batch_size: int = 64,
        show_progress: bool | None = None,
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        from ..progress import progress

        texts = check_texts(items, ids)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with progress(total=len(texts), desc=f"encode text ({self.spec})", enabled=show_progress) as bar:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                out[start : start + len(chunk)] = self.model.encode(
                    chunk, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
                )
                bar.update(len(chunk))
        return out


def check_texts(items: Sequence[Any], ids: Sequence[str] | None = None) -> list[str]:
    """Refuse non-strings and blank strings up front, naming the item, rather than embed garbage."""
    texts = list(items)
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            who = ids[i] if ids is not None else f"#{i}"
            raise ValueError(f"item {who!r}: caption must be a non-empty string, got {t!r}")
    return texts


@register_encoder("st")
def _create(body: str, modality: str, device: str) -> Encoder:
    if modality != "text":
        raise ValueError(f"st:{body} is a text encoder; it cannot embed {modality}")
    return SentenceTransformerEncoder(body, device)
