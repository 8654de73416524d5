"""A fast pass over every row before any model loads, so that one bad file costs seconds, not an hour.

Each image is probed (it exists, its header parses, its size is within the pixel limit, its structure
verifies) without decoding pixels, and each primary caption must be non-empty. ``data.on_error`` says what
a bad row does: ``skip`` leaves it out (the build lists it in ``skipped.parquet``), ``fail`` stops, naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import DataConfig
from ..core.progress import progress
from .images import ImageLoadError, probe_image

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadRow:
    """A row left out of a build, and why."""

    id: str
    reason: str


def row_problem(item_id: str, image: object, captions: list[str], primary: str) -> str | None:
    """Why a row cannot be indexed, in one line naming it; None when it can."""
    if not captions:
        return f"item {item_id!r}: empty caption in the primary language {primary!r}"
    try:
        probe_image(image, item=item_id)
    except ImageLoadError as e:
        return str(e)
    return None


def scan_rows(
    ds: datasets.Dataset, cfg: DataConfig, captions: list[list[str]]
) -> tuple[datasets.Dataset, list[BadRow]]:
    """Probe every row; drop the bad ones (``on_error: skip``) or raise on the first (``fail``).

    Args:
        ds: the loaded dataset.
        cfg: its data config (``on_error`` and the primary language).
        captions: every row's primary-language captions, in order.

    Returns:
        The dataset without its bad rows, and those rows with their reasons.
    """
    bad: list[BadRow] = []
    keep: list[int] = []
    primary = cfg.languages[0]
    images = ds.with_format(None)["image"]  # raw values: paths or bytes, never decoded PIL images
    with progress(total=len(ds), desc="checking rows") as bar:
        for i, (item_id, image, caption) in enumerate(zip(ds["id"], images, captions)):
            problem = row_problem(item_id, image, caption, primary)
            if problem is None:
                keep.append(i)
            elif cfg.on_error == "fail":
                raise ValueError(f"{problem} (data.on_error is 'fail'; 'skip' leaves such rows out)")
            else:
                bad.append(BadRow(item_id, problem))
            bar.update(1)
    if bad:
        logger.warning("skipped %d of %d rows that cannot be indexed, e.g. %s", len(bad), len(ds), bad[0].reason)
        ds = ds.select(keep)
    return ds, bad
