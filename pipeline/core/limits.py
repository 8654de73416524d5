"""Every bound a query or an image may hit, in one typed place read by the CLI, the Python API and the server."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MiB = 1024 * 1024

# The largest image, width x height, that any entry point decodes (queries, uploads and builds alike).
# 40 MP decodes to ~120 MB of RGB, a bounded cost per request; the encoders resize to a few hundred
# pixels, so larger images add decode memory and time but no information. A bigger photo (48 MP and up)
# should be downscaled first, or the limit raised through ``Limits(max_image_pixels=...)``.
MAX_IMAGE_PIXELS = 40_000_000


@dataclass(frozen=True)
class Limits:
    """Bounds on what one query may ask of a Retriever or the server.

    They keep a single caller from exhausting memory or CPU: the body cap stops huge uploads before they
    are parsed, the pixel cap stops decompression bombs before they are decoded, and ``max_k`` and
    ``max_text_chars`` bound the work of one search. Exceeding one is an error, never a silent clamp,
    and the same error on every entry point (see :mod:`pipeline.query`).
    """

    max_upload_bytes: int = 8 * MiB  # largest uploaded image file, in bytes (HTTP 413 above it)
    max_k: int = 100  # most hits one search may return (HTTP 422 above it)
    max_text_chars: int = 1000  # longest text query after stripping, in characters (HTTP 422 above it)
    max_image_pixels: int = MAX_IMAGE_PIXELS  # largest image, width x height, checked from the header (413)
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
