"""``open_clip:<arch>/<tag|checkpoint>``: either tower of an open_clip model, through open_clip's own API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Encoder, register_encoder
from .st import check_texts
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


class OpenClipTextEncoder(Encoder):
    """The text tower of an open_clip model."""

    modality = "text"

    def __init__(self, body: str, device: str):
        self.spec, self.device = f"open_clip:{body}", device
        self.model, _, self.tokenizer, self._version = load_open_clip(body, device)
        self._dim = int(self.model.text_projection.shape[-1]) if _has_proj(self.model) else self._probe_dim()

    def _probe_dim(self) -> int:
        return int(self._forward(["probe"]).shape[1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def version(self) -> str:
        return self._version

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(texts).to(self.device)).float().cpu().numpy()

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
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with progress(total=len(texts), desc=f"encode text ({self.spec})", enabled=show_progress) as bar:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                out[start : start + len(chunk)] = self._forward(chunk)
                bar.update(len(chunk))
        return out


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
