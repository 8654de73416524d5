"""``open_clip:<arch>/<tag|checkpoint>``: either tower of an open_clip model, through open_clip's own API."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .base import Encoder, TextEncoder, register_encoder
from .torch_image import TorchImageEncoder

logger = logging.getLogger(__name__)


def parse_body(body: str) -> tuple[str, str | None]:
    """Split ``arch/tag`` or ``arch/path/to/ckpt.pt``; ``hf-hub:org/name`` is a whole model name."""
    if body.startswith(("hf-hub:", "local-dir:")):
        return body, None
    arch, sep, pretrained = body.partition("/")
    return arch, (pretrained or None) if sep else None


def load_open_clip(body: str, device: str) -> tuple[Any, Any, Any, str]:
    """Return (model, eval transform, tokenizer, version) for an open_clip spec body."""
    import open_clip

    arch, pretrained = parse_body(body)
    if pretrained is None and not arch.startswith(("hf-hub:", "local-dir:")):
        logger.warning("open_clip:%s has no pretrained tag or checkpoint: its weights are random", body)
    if pretrained is not None and Path(pretrained).suffix and not Path(pretrained).exists():
        raise ValueError(f"open_clip checkpoint not found: {pretrained}")
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    version = f"open_clip {open_clip.__version__}; {arch}; {Path(pretrained).name if pretrained else 'random'}"
    return model, preprocess, tokenizer, version


class OpenClipTextEncoder(TextEncoder):
    """The text tower of an open_clip model."""

    def __init__(self, body: str, device: str):
        self.spec, self.device = f"open_clip:{body}", device
        self.model, _, self.tokenizer, self._version = load_open_clip(body, device)
        self._dim = int(self.model.text_projection.shape[-1]) if _has_proj(self.model) else 0
        if not self._dim:  # towers without a projection matrix: ask the model
            self._dim = int(self.forward(["probe"]).shape[1])

    def forward(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu().numpy()


def _has_proj(model: Any) -> bool:
    proj = getattr(model, "text_projection", None)
    return proj is not None and hasattr(proj, "shape")


@register_encoder("open_clip")
def _create(body: str, modality: str, device: str) -> Encoder:
    if modality == "text":
        return OpenClipTextEncoder(body, device)
    model, preprocess, _, version = load_open_clip(body, device)
    dim = int(model.visual.output_dim)
    return TorchImageEncoder(f"open_clip:{body}", model.encode_image, preprocess, dim, version, device)
