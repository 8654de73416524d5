"""Stable content hashes: anchor-set identity and embedding-cache keys."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def hash_arrays(*parts: Any) -> str:
    """A stable sha256 over strings, bytes and arrays, used for the anchor-set and data fingerprints."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (bytes, bytearray)):
            h.update(part)
        else:
            h.update(str(part).encode())
        h.update(b"\x00")
    return h.hexdigest()
