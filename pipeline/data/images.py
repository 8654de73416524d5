"""Decoding of image sources (path, bytes, PIL, datasets dict) into RGB, with errors that name the item."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

# Transparent pixels are composited onto white: emoji, icons and cut-outs are drawn for light pages.
BACKGROUND = (255, 255, 255)
# Decompression-bomb guard: refuse anything above this many pixels (PIL warns at ~89M).
MAX_PIXELS = 64_000_000


class ImageLoadError(ValueError):
    """An image could not be read or converted; the message names the item."""


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


def load_image(source: Any, item: str | None = None) -> Image.Image:
    """Open and fully decode ``source`` as RGB.

    Args:
        source: a PIL image, a path, encoded bytes, or a 🤗 datasets ``{"bytes", "path"}`` dict.
        item: the item's id, used in the error message.

    Returns:
        A loaded RGB image.

    Raises:
        ImageLoadError: the file is missing, truncated, not an image, or too large.
    """
    what = f"item {item!r}" if item is not None else "image"
    where = f" ({source})" if isinstance(source, (str, os.PathLike)) else ""
    try:
        img = _open(source)
        if img.width * img.height > MAX_PIXELS:
            raise ImageLoadError(
                f"{what}{where}: {img.width}x{img.height} pixels exceeds the limit of {MAX_PIXELS}"
            )
        img.load()
        return to_rgb(img)
    except ImageLoadError:
        raise
    except FileNotFoundError as e:
        raise ImageLoadError(f"{what}: image file not found: {e.filename or source}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"{what}{where}: cannot decode image: {e}") from e
