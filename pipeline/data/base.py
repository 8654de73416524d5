"""The data-source registry and the column contract every source fulfils.

Every source yields a ``datasets.Dataset`` with at least ``id`` (unique string), ``image`` (encoded bytes
or a file path), ``caption`` (the primary language's first caption, for display) and ``captions`` (struct:
per configured language a string or a list of strings, null or empty where a translation is missing).
Other columns are kept as metadata.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Config, DataConfig
from ..core.registry import Registry
from .checks import BadRow, scan_rows

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "image", "caption", "captions")


@dataclass(frozen=True)
class Attribution:
    """A licence notice that must travel with a source's images wherever they are shown."""

    text: str  # the notice itself
    project: str  # the work's name as the notice spells it (a page links it to project_url)
    project_url: str  # where the work comes from
    license: str  # short licence name, e.g. "CC BY-SA 4.0"
    license_url: str  # the licence text

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        """The notice on one line, with where to read the licence (what a terminal or file metadata shows)."""
        return f"{self.text} ({self.license_url})"


@dataclass(frozen=True)
class DataSource:
    """A registry entry: how to load a source, and what its images oblige a display to credit."""

    load: Callable[[DataConfig], datasets.Dataset]  # config -> dataset with REQUIRED_COLUMNS
    attribution: Callable[[], Attribution] | None = None  # lazily, so optional packages stay unimported
    labels: tuple[str, ...] = ("label",)  # its class-label columns: eval --task classify's default


SOURCES: Registry[DataSource] = Registry("data source")


def register_source(
    name: str, *, attribution: Callable[[], Attribution] | None = None, labels: tuple[str, ...] = ("label",)
) -> Callable[[Callable[[DataConfig], datasets.Dataset]], Callable[[DataConfig], datasets.Dataset]]:
    """Decorator: register ``loader(cfg) -> datasets.Dataset`` as data source ``name``."""

    def deco(load: Callable[[DataConfig], datasets.Dataset]) -> Callable[[DataConfig], datasets.Dataset]:
        SOURCES.add(name, DataSource(load, attribution, labels))
        return load

    return deco


def list_sources() -> list[str]:
    return SOURCES.names()


def source_attribution(name: str | None) -> Attribution | None:
    """The notice a display of source ``name`` must show; None for unknown sources and sources without one."""
    if name is None or name not in SOURCES:
        return None
    entry = SOURCES.get(name)
    return entry.attribution() if entry.attribution is not None else None


def source_labels(name: str) -> list[str]:
    """The class-label columns a source provides (``eval.label_columns`` when the config names none)."""
    return list(SOURCES.get(name).labels)


def describe_data(cfg: DataConfig) -> str:
    """The data as people tell two runs apart: the source and what it read, e.g. ``hf:data/x (split test)``."""
    parts = [cfg.source, *(p for p in (cfg.path, cfg.captions) if p)]
    split = f" (split {cfg.split})" if cfg.source == "hf" and cfg.split != "train" else ""
    return ":".join(parts) + split


def index_attribution(config: Config | None) -> Attribution | None:
    """The notice of the source an index was built from, named by its recorded config (None: none recorded)."""
    return source_attribution(config.data.source if config is not None else None)


def cache_dir(cfg: DataConfig) -> Path:
    """The cache root: the config's, else $RELSPACE_CACHE, else ~/.cache/relspace."""
    root = cfg.cache_dir or os.environ.get("RELSPACE_CACHE") or Path.home() / ".cache" / "relspace"
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def captions(ds: Any, lang: str) -> list[list[str]]:
    """Every item's captions in ``lang``: a list per item, empty where the item has none in ``lang``.

    The one place that reads captions by language. The ``captions`` struct holds every configured language,
    the primary one included, as a string or a list of strings per item (COCO and Flickr30k give five);
    blank strings are dropped, so a missing translation is simply an empty list.
    """
    return [caption_list((c or {}).get(lang)) for c in ds["captions"]]


def caption_list(value: Any) -> list[str]:
    """One item's captions in one language as a list of non-blank, stripped strings."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [v.strip() for v in values if isinstance(v, str) and v.strip()]


def first_caption(caps: Sequence[str]) -> str:
    """The ``caption`` column's value, for display: the first of an item's primary-language captions, or ""."""
    return caps[0] if caps else ""


def caption_rows(per_item: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[str]]:
    """Flatten captions per item into rows: (the item of each row, the texts), in item order."""
    items = np.fromiter((i for i, caps in enumerate(per_item) for _ in caps), dtype=np.int64)
    return items, [c for caps in per_item for c in caps]


def load_data(cfg: DataConfig, *, skipped: list[BadRow] | None = None) -> datasets.Dataset:
    """Load the configured source and check what every later stage relies on, before any model loads.

    Ids must be unique and non-empty (an error: they make the data ambiguous). Every row is probed
    (:mod:`.checks`): a bad one is left out or stops the load, as ``cfg.on_error`` says.

    Args:
        cfg: the data config.
        skipped: if given, the rows left out are appended to it, with their reasons.
    """
    ds = SOURCES.get(cfg.source).load(cfg)
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise ValueError(f"data source {cfg.source!r} lacks columns {missing}")
    if cfg.limit is not None and cfg.limit < len(ds):
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(ds), cfg.limit, replace=False))
        ds = ds.select(keep.tolist())
    check_ids(ds["id"])
    ds, bad = scan_rows(ds, cfg, captions(ds, cfg.languages[0]))
    if skipped is not None:
        skipped.extend(bad)
    if len(ds) == 0:
        raise ValueError(f"no row of data source {cfg.source!r} can be indexed ({len(bad)} bad rows, "
                         f"e.g. {bad[0].reason if bad else 'none'})")
    for lang in cfg.languages[1:]:
        missing = sum(not c for c in captions(ds, lang))
        if missing:
            logger.warning("%d of %d items have no caption in %r: they are left out of that language's captions",
                           missing, len(ds), lang)
    logger.info("loaded %d items from %s", len(ds), cfg.source)
    return ds


def check_ids(ids: Sequence[object]) -> None:
    """Refuse duplicate or empty ids, naming the first offending row."""
    seen: set[str] = set()
    for i, item_id in enumerate(ids):
        if not isinstance(item_id, str) or not item_id.strip():
            raise ValueError(f"row {i}: empty or non-string id {item_id!r}")
        if item_id in seen:
            raise ValueError(f"duplicate id {item_id!r} (row {i}): ids must be unique")
        seen.add(item_id)
