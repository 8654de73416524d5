"""Request limits of the HTTP service: one typed place for every bound a client can hit."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask of the server.

    They keep a single client from exhausting memory or CPU: the body cap stops huge uploads before they
    are parsed, the pixel cap stops decompression bombs before they are decoded, and ``max_k`` and
    ``max_text_chars`` bound the work of one search. Exceeding one is an error, never a silent clamp.
    """

    max_upload_bytes: int = 8 * MiB  # largest uploaded image file, in bytes (413 above it)
    max_k: int = 100  # most hits one search may return (422 above it)
    max_text_chars: int = 1000  # longest text query, in characters (422 above it)
    max_image_pixels: int = 40_000_000  # largest image, width x height, checked from the header (413)
    form_overhead_bytes: int = 64 * 1024  # room for multipart headers and form fields beside the file

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted at all: an upload of the maximum size plus form overhead."""
        return self.max_upload_bytes + self.form_overhead_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
