"""The method registry and the type of a fitted method, apart from the methods themselves.

Why a module of its own: the built-in methods (``methods``) and the literature levers (``literature``) both
register here, and ``methods`` imports ``literature`` so that every method is listed once ``methods`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.registry import Registry
from ..space.projectors import Blocks

__all__ = ["METHODS", "Layout", "Map", "MethodFit", "SharedMaps", "register_method"]

Map = Callable[[np.ndarray], np.ndarray]


@dataclass
class SharedMaps:
    """A fitted method: ``text`` and ``image`` map absolute vectors into one shared space."""

    text: Map
    image: Map


# (text anchors, image anchors, projector options, seed, blocks) -> SharedMaps. ``blocks`` gives, per modality, the
# (width, weight) of each ensemble member's columns (None: one encoder); methods that do not project per encoder
# see the members' vectors side by side, which is how an ensemble enters a baseline.
MethodFit = Callable[..., SharedMaps]
Layout = tuple["Blocks | None", "Blocks | None"]  # (text blocks, image blocks)
METHODS: Registry[MethodFit] = Registry("method")
register_method = METHODS.register
