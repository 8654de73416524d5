"""Human sizes ("512M", "4G") for memory budgets, parsed in one place."""

from __future__ import annotations

SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str | int, key: str = "size") -> int:
    """Bytes from a human size ("512M", "4G", "1.5G", "1048576"; binary units), refusing a bad one by ``key``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (text[:-1], text[-1]) if text and text[-1] in SIZE_UNITS else (text, "")
    try:
        size = int(float(number) * SIZE_UNITS[unit])
    except (ValueError, OverflowError):  # "", "inf", "nan"
        size = 0
    if size <= 0:
        raise ValueError(f"{key} must be a positive size such as 512M, 4G or a byte count, got {value!r}")
    return size
