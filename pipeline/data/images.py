"""Decoding of image sources (path, bytes, PIL, datasets dict) into RGB, with errors that name the item."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.limits import MAX_IMAGE_PIXELS

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
    source: Any, item: str | None = None, *, what: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS
) -> Image.Image:
    """Open and fully decode ``source`` as RGB, refusing more than ``max_pixels`` before decoding.

    Args:
        source: a PIL image, a path, encoded bytes, or a 🤗 datasets ``{"bytes", "path"}`` dict.
        item: the item's id, used in the error message ("item 'x'").
        what: how errors name the image instead, e.g. "the query image".
        max_pixels: the pixel limit (default :data:`pipeline.core.limits.MAX_IMAGE_PIXELS`).

    Returns:
        A loaded RGB image.

    Raises:
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels.
        ImageLoadError: the file is missing, truncated or not an image.
    """
    with _named_errors(source, item, what, max_pixels):
        img = _open_within(source, item, what, max_pixels)
        img.load()
        # Cameras store pixels as the sensor saw them and a rotation tag; an encoder must see the photo upright.
        return to_rgb(ImageOps.exif_transpose(img))


def probe_image(source: Any, item: str | None = None, *, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
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
        img = _open_within(source, item, None, max_pixels)
        with img:
            img.verify()


def _label(source: Any, item: str | None, what: str | None) -> tuple[str, str]:
    """How messages name an image: (who, where), e.g. ("item 'x'", " (/path/x.png)")."""
    who = what or (f"item {item!r}" if item is not None else "image")
    return who, f" ({source})" if isinstance(source, (str, os.PathLike)) else ""


def _open_within(source: Any, item: str | None, what: str | None, max_pixels: int) -> Image.Image:
    """Open the header and refuse an image over the pixel limit before any pixel is decoded."""
    img = _open(source)
    if img.width * img.height > max_pixels:
        if img is not source:  # we opened it: release the file now, not at garbage collection
            img.close()
        who, where = _label(source, item, what)
        raise ImageTooLargeError(too_large_message(f"{who}{where}", img.width, img.height, max_pixels))
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
