"""Names of the relative spaces an index holds: one per modality, and one per caption language for text.

A space key names both a projector (the anchors of that modality and language) and the manifest entry of
the encoder that serves it. It has one textual form, ``"image"``, ``"text"`` or ``"text:<lang>"``, used in
the manifest and the projector file, and :meth:`SpaceKey.parse` is the only place that reads it back.
(Not to be confused with ``evaluate.method_registry.SharedMaps``, a fitted method's pair of maps.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Modality = Literal["text", "image"]
MODALITIES: tuple[Modality, ...] = ("text", "image")


@dataclass(frozen=True)
class SpaceKey:
    """A modality, and for text optionally a language."""

    modality: Modality
    lang: str | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"unknown modality {self.modality!r}; expected one of {MODALITIES}")
        if self.lang is not None and (self.modality != "text" or not self.lang or ":" in self.lang):
            raise ValueError(f"invalid space: modality {self.modality!r} with language {self.lang!r}")

    def __str__(self) -> str:
        return self.modality if self.lang is None else f"{self.modality}:{self.lang}"

    @classmethod
    def parse(cls, key: str) -> SpaceKey:
        """Read the textual form written by ``str()``."""
        modality, sep, lang = str(key).partition(":")
        if sep and not lang:
            raise ValueError(f"invalid space key {key!r}")
        return cls(modality, lang or None)  # type: ignore[arg-type]

    @classmethod
    def text(cls, lang: str) -> SpaceKey:
        return cls("text", lang)

    @property
    def shared(self) -> SpaceKey:
        """The modality-wide key: the encoder entry for languages without an encoder of their own."""
        return SpaceKey(self.modality)


IMAGE = SpaceKey("image")
TEXT = SpaceKey("text")
