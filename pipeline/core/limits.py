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
# The most elongated image accepted, long side : short side. The encoders resize the short side up to
# their input size, so a 100000x1 image (a 370-byte PNG) would become 16,000,000x160 = 7.7 GB of RGB:
# the shape, not the pixel count, is what costs. 50:1 passes every real image we know of (emoji and
# photos are near 1:1, panoramas reach ~10:1, a long scanned receipt ~1:20) with room to spare, and
# bounds the resized image to ENCODER_SIDE x 50 * ENCODER_SIDE = 13.4 MP (40 MB of RGB).
MAX_ASPECT_RATIO = 50
# The largest short side an image encoder resizes to (DINOv2 at 518; CLIP, EfficientNet and SigLIP use less).
# The resize check (pipeline.data.images.resized_pixels) assumes it, so it holds for every encoder.
ENCODER_SIDE = 518
# JPEGs are decoded at a reduced scale (PIL draft: 1/2, 1/4, 1/8 in the DCT) as long as the short side
# stays at least this: twice ENCODER_SIDE, so the encoder's antialiased resize still has pixels to average.
DRAFT_SIDE = 2 * ENCODER_SIDE


@dataclass(frozen=True)
class Limits:
    """Bounds on what one query may ask of a Retriever or the server.

    They keep a single caller from exhausting memory or CPU: the body cap stops huge uploads before they
    are parsed, the pixel cap stops decompression bombs before they are decoded, and ``max_k`` and
    ``max_text_chars`` bound the work of one search. The pixel and aspect bounds hold per image, on the
    decoded and on the resized size (see :func:`pipeline.data.images.load_image`); ``max_inflight_pixels``
    holds across the server's concurrent requests. Exceeding one is an error, never a silent clamp,
    and the same error on every entry point (see :mod:`pipeline.query`).
    """

    max_upload_bytes: int = 8 * MiB  # largest uploaded image file, in bytes (HTTP 413 above it)
    max_k: int = 100  # most hits one search may return (HTTP 422 above it)
    max_text_chars: int = 1000  # longest text query after stripping, in characters (HTTP 422 above it)
    max_image_pixels: int = MAX_IMAGE_PIXELS  # largest image, width x height, checked from the header (413)
    max_aspect_ratio: int = MAX_ASPECT_RATIO  # most elongated image, long side : short side (422 beyond it)
    # pixels the server decodes at once, summed over concurrent requests (each charged its decoded or resized
    # size, whichever is larger): 2 images at the limit, ~250 MB of RGB; a request that would pass it waits
    max_inflight_pixels: int = 2 * MAX_IMAGE_PIXELS
    pixel_wait_ms: int = 2000  # how long such a request waits for room before a 503 (with Retry-After)
    max_json_depth: int = 32  # deepest nesting of a JSON body, checked before parsing (400 beyond it)
    form_overhead_bytes: int = 64 * 1024  # room for multipart headers and form fields beside the file

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")
        if self.max_inflight_pixels < self.max_image_pixels:  # else one allowed image could never be decoded
            raise ValueError(f"Limits.max_inflight_pixels ({self.max_inflight_pixels}) must be at least "
                             f"max_image_pixels ({self.max_image_pixels})")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted at all: an upload of the maximum size plus form overhead."""
        return self.max_upload_bytes + self.form_overhead_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
