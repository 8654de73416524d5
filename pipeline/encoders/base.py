"""Encoder interface and the scheme and alias registries; implementations register themselves here."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.progress import advance, encode_desc, progress
from ..core.registry import Registry
from ..core.spaces import Modality
from ..core.specs import PREFIX

__all__ = ["ALIASES", "PREFIX_OPTION", "SCHEMES", "Encoder", "EncoderInfo", "Modality", "TextEncoder",
           "check_texts", "fill_rows", "register_alias", "register_encoder", "split_prefix"]

logger = logging.getLogger(__name__)

# A text encoder's spec may end with this option; everything after it, verbatim, is prepended to every text
# (e5's "query: "). It is part of the spec, so of the manifest's encoder identity and the embedding cache key.
PREFIX_OPTION = PREFIX  # "?prefix=": the spec grammar (pipeline/core/specs.py) keeps what follows verbatim


@dataclass(frozen=True)
class EncoderInfo:
    """What the manifest records of an encoder, so that a query side can be checked against it."""

    spec: str  # the spec string as the user wrote it ("minilm", "st:all-MiniLM-L6-v2", ...)
    modality: Modality  # which modality it embeds
    dim: int  # output dimension
    version: str  # library and weights version, informative only

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "modality": self.modality, "dim": self.dim, "version": self.version}


class Encoder(ABC):
    """Embeds one modality into float32 vectors; subclasses are registered under a scheme.

    Subclasses set ``spec``, ``_dim`` and ``_version`` when they load their model.
    """

    modality: Modality
    spec: str
    _dim: int
    _version: str
    recipe: Any = None  # set by create_encoder: an encoder then pickles as its recipe (see EncoderRecipe)
    # Whether an item gets the same bits in any batch: only then may a build reuse its vectors (encoders/reuse.py).
    # False unless checked: MiniLM's pad-to-longest batches move ~20% of vectors by up to 1.6e-7.
    batch_invariant: bool = False

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickle as the recipe that loads the encoder again, never as its weights, when there is one."""
        if self.recipe is not None:
            return (self.recipe.create, ())
        return super().__reduce_ex__(protocol)

    @property
    def dim(self) -> int:
        """Output dimension."""
        return self._dim

    @property
    def version(self) -> str:
        """Library and weights version, recorded in the manifest."""
        return self._version

    @abstractmethod
    def encode(
        self,
        items: Sequence[Any],
        *,
        batch_size: int = 64,
        show_progress: bool | None = None,
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Embed ``items`` (strings for text; PIL images, paths or bytes for images) as (n, dim) float32.

        ``ids`` only serve error messages, so that a bad item is named by its id rather than its position.
        """

    @property
    def members(self) -> list[Encoder]:
        """The encoders behind this one: itself, or an ensemble's members (each embedded and cached apart)."""
        return [self]

    @property
    def blocks(self) -> tuple[tuple[int, float], ...]:
        """(width, weight) of each member's columns in ``encode``'s output: one projector per block."""
        return ((self.dim, 1.0),)

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo(spec=self.spec, modality=self.modality, dim=self.dim, version=self.version)


class TextEncoder(Encoder):
    """A text encoder defined by ``forward(list of strings) -> (n, dim)``; batching, checks and prefix are shared."""

    modality = "text"
    prefix = ""  # prepended to every text before forward; create_encoder sets it from the spec's ?prefix=

    def set_prefix(self, prefix: str) -> None:
        """Prepend ``prefix`` to every text from now on; a model that cannot embed some prefixes refuses them."""
        self.prefix = prefix

    @property
    def version(self) -> str:
        """The model's version, plus the prefix: an alias's prefix is not in its spec, and it changes the vectors."""
        return f"{self._version}; prefix {self.prefix!r}" if self.prefix else self._version

    @abstractmethod
    def forward(self, texts: list[str]) -> np.ndarray:
        """The bare model on one batch (also what benchmarks compare against)."""

    def encode(
        self,
        items: Sequence[Any],
        *,
        batch_size: int = 64,
        show_progress: bool | None = None,
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        texts = [self.prefix + t for t in check_texts(items, ids)]
        vectors = (self.forward(texts[start : start + batch_size]) for start in range(0, len(texts), batch_size))
        return fill_rows(vectors, len(texts), self.dim, desc=encode_desc("text", self.spec),
                         show_progress=show_progress)


def fill_rows(
    vectors: Iterable[np.ndarray], n: int, dim: int, *, desc: str, show_progress: bool | None = None
) -> np.ndarray:
    """Stack batches of vectors into one preallocated (n, dim) float32 array under a progress bar.

    Every encoder's batch loop ends here, so the whole output is allocated once rather than concatenated.
    """
    out = np.empty((n, dim), dtype=np.float32)
    pos = 0
    with progress(total=n, desc=desc, enabled=show_progress) as bar:
        for batch in vectors:
            out[pos : pos + len(batch)] = batch
            pos += len(batch)
            bar.update(len(batch))
            advance(len(batch))  # the enclosing stage's overall bar (core/progress.py)
    if pos != n:
        raise RuntimeError(f"{desc}: the batches held {pos} vectors for {n} items")
    return out


def check_texts(items: Sequence[Any], ids: Sequence[str] | None = None) -> list[str]:
    """Refuse non-strings and blank strings up front, naming the item, rather than embed garbage."""
    texts = list(items)
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            who = ids[i] if ids is not None else f"#{i}"
            raise ValueError(f"item {who!r}: caption must be a non-empty string, got {t!r}")
    return texts


def split_prefix(spec: str) -> tuple[str, str]:
    """Split ``"<spec>?prefix=<text>"`` into the spec and the prefix (``""`` when there is none).

    Everything after ``?prefix=`` is the prefix, trailing spaces included, so ``"st:e5?prefix=query: "`` gives
    ``("st:e5", "query: ")``.
    """
    base, sep, prefix = spec.partition(PREFIX_OPTION)
    if sep and not prefix:
        raise ValueError(f"encoder spec {spec!r}: {PREFIX_OPTION} is empty; give the text to prepend, or drop it")
    return base, prefix


EncoderFactory = Callable[[str, "Modality", str], Encoder]
SCHEMES: Registry[EncoderFactory] = Registry("encoder scheme")
ALIASES: Registry[tuple[Callable[[], str], tuple[Modality, ...]]] = Registry("encoder alias")


def register_encoder(scheme: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register a factory ``(body, modality, device) -> Encoder`` for specs ``"<scheme>:<body>"``."""
    return SCHEMES.register(scheme)


def register_alias(name: str, resolve: Callable[[], str], modalities: tuple[Modality, ...]) -> None:
    """Register a short name that resolves (lazily, so that optional packages stay optional) to a spec."""
    ALIASES.add(name, (resolve, modalities))
