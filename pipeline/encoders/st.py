"""``st:<name|dir>``: sentence-transformers text encoders, by hub name or local directory."""

from __future__ import annotations

import logging

import numpy as np

from ..core.hub import require_model
from .base import Encoder, TextEncoder, register_encoder

logger = logging.getLogger(__name__)


class SentenceTransformerEncoder(TextEncoder):
    """Sentence embeddings exactly as the model's own ``encode`` produces them (its pooling, its config)."""

    def __init__(self, name: str, device: str):
        # Checked before the import: sentence-transformers (torch, transformers) takes seconds to import.
        # It also tries its own organisation for bare names.
        require_model(name, [name] if "/" in name else [name, f"sentence-transformers/{name}"],
                      "sentence-transformers model")
        import sentence_transformers
        from sentence_transformers import SentenceTransformer

        self.spec = f"st:{name}"
        self.model = SentenceTransformer(name, device=device)
        getdim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self._dim = int(getdim())
        self._version = f"sentence-transformers {sentence_transformers.__version__}"

    def forward(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)


@register_encoder("st")
def _create(body: str, modality: str, device: str) -> Encoder:
    if modality != "text":
        raise ValueError(f"st:{body} is a text encoder; it cannot embed {modality}")
    return SentenceTransformerEncoder(body, device)
