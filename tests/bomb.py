"""A PNG that claims a huge size in a few bytes: the pixel limit must refuse it from the header alone."""

from __future__ import annotations

import struct
import zlib


def png_header(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG whose header says width x height, with a token IDAT: under 100 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 64)
    chunk += struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    return b"\x89PNG\r\n\x1a\n" + chunk


# What every entry point must say about a 20000x20000 image under the default limit.
HUGE_MESSAGE = "20000x20000 = 400000000 pixels exceeds the limit of 40000000 pixels"
