"""Data sources through 🤗 datasets: a registry of loaders that all yield the same columns.

Every source yields a ``datasets.Dataset`` with at least:
``id`` (unique string), ``image`` (encoded bytes or a file path), ``caption`` (primary-language string)
and ``captions`` (struct: one string per configured language). Other columns are kept as metadata.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DataConfig
from ..registry import Registry

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

SourceLoader = Callable[[DataConfig], "datasets.Dataset"]
SOURCES: Registry[SourceLoader] = Registry("data source")
register_source = SOURCES.register
REQUIRED_COLUMNS = ("id", "image", "caption", "captions")


def list_sources() -> list[str]:
    _load_builtin()
    return SOURCES.names()


def cache_dir(cfg: DataConfig) -> Path:
    """The cache root: the config's, else $RELSPACE_CACHE, else ~/.cache/relspace."""
    root = cfg.cache_dir or os.environ.get("RELSPACE_CACHE") or Path.home() / ".cache" / "relspace"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_data(cfg: DataConfig) -> datasets.Dataset:
    """Load the configured source and check the columns and ids every later stage relies on."""
    _load_builtin()
    ds = SOURCES.get(cfg.source)(cfg)
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise ValueError(f"data source {cfg.source!r} lacks columns {missing}")
    if cfg.limit is not None and cfg.limit < len(ds):
        import numpy as np

        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(ds), cfg.limit, replace=False))
        ds = ds.select(keep.tolist())
    validate(ds)
    logger.info("loaded %d items from %s", len(ds), cfg.source)
    return ds


def validate(ds: datasets.Dataset) -> None:
    """Refuse duplicate or empty ids and empty primary captions, naming the first offending item."""
    ids = ds["id"]
    seen: set[str] = set()
    for i, item_id in enumerate(ids):
        if not isinstance(item_id, str) or not item_id.strip():
            raise ValueError(f"row {i}: empty or non-string id {item_id!r}")
        if item_id in seen:
            raise ValueError(f"duplicate id {item_id!r} (row {i})")
        seen.add(item_id)
    for item_id, caption in zip(ids, ds["caption"]):
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"item {item_id!r}: empty caption")


def _load_builtin() -> None:
    from . import sources  # noqa: F401  (registers openmoji and folder)
