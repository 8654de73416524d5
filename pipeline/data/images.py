"""Decoding of image sources (path, bytes, PIL, datasets dict) into RGB, with errors that name the item."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.limits import DRAFT_SIDE, ENCODER_SIDE, MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS

# Transparent pixels are composited onto white: emoji, icons and cut-outs are drawn for light pages.
BACKGROUND = (255, 255, 255)
# The decompression-bomb guard is ours (load_image, against pipeline.core.limits), checked from the header
# before any pixel is decoded. PIL's own guard would speak first, in its own words: a warning above
# ~89 MP and DecompressionBombError in Image.open above ~179 MP, whatever limit relspace is configured
# with. One limit, one message: PIL's check is switched off and ours always runs instead.
Image.MAX_IMAGE_PIXELS = None


class ImageLoadError(ValueError):
    """An image could not be read or converted; the message names the item."""


class ImageTooLargeError(ImageLoadError):
    """An image has more pixels than the limit (a decompression bomb, or just too big to decode)."""


class ImageShapeError(ImageLoadError):
    """An image more elongated than the aspect-ratio bound: the encoders' resize would blow it up."""


def resized_pixels(width: int, height: int, side: int = ENCODER_SIDE) -> int:
    """Pixels of ``width`` x ``height`` once an encoder resizes its short side to ``side`` (up or down)."""
    short, long = sorted((max(width, 1), max(height, 1)))
    return side * -(-long * side // short)


def pixel_cost(width: int, height: int) -> int:
    """The most pixels decoding and resizing one image holds at once: its decoded or its resized size."""
    return max(width * height, resized_pixels(width, height))


def check_size(what: str, width: int, height: int, max_pixels: int, max_aspect_ratio: int) -> None:
    """The one image rule, from the header: within the pixel limit decoded and resized, and not too elongated.

    The resize may always make one ``ENCODER_SIDE`` square (what every query costs the model); beyond that it
    must fit ``max_pixels`` too, which holds for any aspect ratio allowed by default (see core.limits).

    Raises:
        ImageTooLargeError: more than ``max_pixels`` decoded, or resized.
        ImageShapeError: long side over ``max_aspect_ratio`` times the short one (or a side of 0).
    """
    if width * height > max_pixels:
        raise ImageTooLargeError(too_large_message(what, width, height, max_pixels))
    short, long = sorted((width, height))
    if short < 1 or long > max_aspect_ratio * short:
        ratio = "undefined" if not short else (
            f"{long / short:,.0f}:1" if long >= 100 * short else f"{long / short:.3g}:1")
        raise ImageShapeError(f"{what} is {width}x{height}, an aspect ratio of {ratio}; the limit is "
                              f"{max_aspect_ratio}:1 (crop or pad it), as the encoders' resize would blow it up")
    resized = resized_pixels(width, height)
    if resized > max(max_pixels, ENCODER_SIDE * ENCODER_SIDE):
        raise ImageTooLargeError(f"{what} is too large once resized for the encoder: {width}x{height} becomes "
                                 f"{resized} pixels, over the limit of {max_pixels} pixels")


def too_large_message(what: str, width: int | None, height: int | None, limit: int) -> str:
    """The one wording of the pixel limit, for every entry point."""
    size = f"{width}x{height} = {width * height} pixels" if width and height else "its pixel count"
    return f"{what} is too large: {size} exceeds the limit of {limit} pixels"


def _open(source: Any) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, dict):  # 🤗 datasets Image(decode=False) value
        if source.get("bytes"):
            return Image.open(io.BytesIO(source["bytes"]))
        return Image.open(source["path"])
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(source)))
    if isinstance(source, (str, os.PathLike)):
        return Image.open(source)
    raise TypeError(f"unsupported image source of type {type(source).__name__}")


def _unidentified(source: Any) -> str:
    """Why PIL recognised no format, from the first bytes: read only after it failed, so decoding pays nothing."""
    if isinstance(source, dict):
        source = source.get("bytes") or source.get("path")
    head = b"?"
    if isinstance(source, (bytes, bytearray, memoryview)):
        head = bytes(source[:1024])
    elif isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        with open(source, "rb") as f:
            head = f.read(1024)
    if not head:
        return "the file is empty (0 bytes)"
    if b"<svg" in head.lower():  # folders of icons often mix SVGs in; PIL draws no vectors
        return "an SVG drawing, not a raster image: convert it to PNG"
    return "not a format Pillow recognises"


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB: alpha over white, palettes expanded, 16/32-bit rescaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        # 16-bit and float images rarely use their full range; stretch what is used to 0..255.
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        img = Image.fromarray(scaled.round().astype(np.uint8))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def load_image(
    source: Any,
    item: str | None = None,
    *,
    what: str | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect_ratio: int = MAX_ASPECT_RATIO,
) -> Image.Image:
    """Open and fully decode ``source`` as RGB, refusing an image :func:`check_size` refuses before decoding.

    Queries, builds and the server all decode through here, so one rule bounds the memory of each. A large
    JPEG is decoded at a reduced scale (PIL ``draft``) that keeps its short side at least ``DRAFT_SIDE``.

    Args:
        source: a PIL image, a path, encoded bytes, or a 🤗 datasets ``{"bytes", "path"}`` dict.
        item: the item's id, used in the error message ("item 'x'").
        what: how errors name the image instead, e.g. "the query image".
        max_pixels: the pixel limit (default :data:`pipeline.core.limits.MAX_IMAGE_PIXELS`).
        max_aspect_ratio: the most elongated shape, long side : short side.

    Returns:
        A loaded RGB image.

    Raises:
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels, decoded or resized.
        ImageShapeError: the image is more elongated than ``max_aspect_ratio``.
        ImageLoadError: the file is missing, truncated or not an image.
    """
    with _named_errors(source, item, what, max_pixels):
        img = _open_within(source, item, what, max_pixels, max_aspect_ratio)
        if img is not source and img.format == "JPEG" and min(img.size) >= 2 * DRAFT_SIDE:
            scale = DRAFT_SIDE / min(img.size)  # draft picks the smallest DCT scale at least this size
            img.draft(None, (max(1, int(img.width * scale)), max(1, int(img.height * scale))))
        img.load()
        # Cameras store pixels as the sensor saw them and a rotation tag; an encoder must see the photo upright.
        return to_rgb(ImageOps.exif_transpose(img))


def measure_image(
    source: Any, *, what: str, max_pixels: int = MAX_IMAGE_PIXELS, max_aspect_ratio: int = MAX_ASPECT_RATIO
) -> int:
    """The :func:`pixel_cost` of decoding ``source``, from its header alone, after :func:`check_size` passes.

    For a server's budget of pixels in flight, drawn before the decode (see ``pipeline.serve.guards``).

    Raises:
        ImageTooLargeError, ImageShapeError, ImageLoadError: as :func:`load_image` would.
    """
    with _named_errors(source, None, what, max_pixels):
        img = _open_within(source, None, what, max_pixels, max_aspect_ratio)
        size = img.size
        if img is not source:
            img.close()
        return pixel_cost(*size)


def probe_image(
    source: Any, item: str | None = None, *, max_pixels: int = MAX_IMAGE_PIXELS,
    max_aspect_ratio: int = MAX_ASPECT_RATIO,
) -> None:
    """Check ``source`` without decoding its pixels: it exists, its header parses, its size is within
    ``max_pixels``, and its file structure verifies (PNG chunk checksums, for one).

    Milliseconds an image instead of the tens an encoder forward costs, so that a build can find a bad file
    before any model loads rather than an hour into embedding.

    Raises:
        ImageTooLargeError, ImageLoadError: as :func:`load_image` would.
    """
    if isinstance(source, Image.Image):
        return
    with _named_errors(source, item, None, max_pixels):
        img = _open_within(source, item, None, max_pixels, max_aspect_ratio)
        with img:
            img.verify()


def _label(source: Any, item: str | None, what: str | None) -> tuple[str, str]:
    """How messages name an image: (who, where), e.g. ("item 'x'", " (/path/x.png)")."""
    who = what or (f"item {item!r}" if item is not None else "image")
    return who, f" ({source})" if isinstance(source, (str, os.PathLike)) else ""


def _open_within(source: Any, item: str | None, what: str | None, max_pixels: int, max_aspect_ratio: int
                 ) -> Image.Image:
    """Open the header and refuse an image :func:`check_size` refuses, before any pixel is decoded."""
    img = _open(source)
    try:
        who, where = _label(source, item, what)
        check_size(f"{who}{where}", img.width, img.height, max_pixels, max_aspect_ratio)
    except ImageLoadError:
        if img is not source:  # we opened it: release the file now, not at garbage collection
            img.close()
        raise
    return img


@contextlib.contextmanager
def _named_errors(source: Any, item: str | None, what: str | None, max_pixels: int) -> Iterator[None]:
    """Turn whatever PIL or the file system raises into one ImageLoadError line that names the image."""
    who, where = _label(source, item, what)
    try:
        yield
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:  # only if a host application re-enabled PIL's own guard
        raise ImageTooLargeError(too_large_message(f"{who}{where}", None, None, max_pixels)) from e
    except FileNotFoundError as e:
        raise ImageLoadError(f"{who}: image file not found: {e.filename or source}") from e
    except UnidentifiedImageError as e:  # PIL's message holds a BytesIO repr, useless to a reader
        raise ImageLoadError(f"{who}{where}: cannot decode image: {_unidentified(source)}") from e
    except (OSError, SyntaxError, ValueError, TypeError) as e:
        raise ImageLoadError(f"{who}{where}: cannot decode image: {e}") from e
