"""The ``hf`` data source: any 🤗 dataset (hub name, save_to_disk directory, imagefolder, data files)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DataConfig
from ..core.hub import hub_endpoint, hub_offline, hub_reachable
from .base import cache_dir, caption_list, first_caption, register_source

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)


# 🤗 datasets builders for local data files, by suffix.
HF_FILE_FORMATS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}


@register_source("hf")
def hf(cfg: DataConfig) -> datasets.Dataset:
    """Any 🤗 dataset, mapped onto the column contract by ``data.*_column`` (see :class:`DataConfig`).

    Caption columns may hold a string or a list of strings per row (several captions per image); an empty
    or null value is a missing translation. An ``Image`` feature is read undecoded (bytes or path), so
    images are decoded once, in the encoder's workers.
    """
    import datasets

    ds = _open_hf(cfg)
    lang_columns = dict(cfg.caption_columns) or {cfg.languages[0]: cfg.caption_column}
    unknown = sorted(set(cfg.languages) - set(lang_columns))
    if unknown:
        raise ValueError(f"data.languages {unknown} have no caption column; set data.caption_columns "
                         f"{{lang: column}} for every language in {cfg.languages}")
    wanted = [cfg.image_column, *lang_columns.values(), cfg.id_column, cfg.label_column]
    missing = [c for c in wanted if c is not None and c not in ds.column_names]
    if missing:
        raise ValueError(f"dataset {cfg.path!r} (split {cfg.split!r}) has no column {missing[0]!r}; "
                         f"its columns are {ds.column_names}")
    if isinstance(ds.features[cfg.image_column], datasets.Image):
        ds = ds.cast_column(cfg.image_column, datasets.Image(decode=False))
    primary = cfg.languages[0]

    id_column = cfg.id_column or ("id" if "id" in ds.column_names else None)

    def to_row(row: dict, i: int) -> dict:
        caps = {lang: caption_list(row[col]) for lang, col in lang_columns.items()}
        out = {"id": str(row[id_column]) if id_column else str(i),
               "caption": first_caption(caps[primary]), "captions": caps}
        if cfg.label_column:
            out["label"] = None if row[cfg.label_column] is None else str(_label_name(ds, cfg.label_column,
                                                                                     row[cfg.label_column]))
        return out

    # The new columns are computed from the text columns alone, in memory, and joined beside the untouched
    # ones: a map over the whole dataset would copy every image and write cache files next to the source,
    # into a user's save_to_disk directory. A list in column order, never a set (a stable column order).
    used = [c for c in ds.column_names if c in {*lang_columns.values(), id_column, cfg.label_column}]
    drop = [c for c in ds.column_names if c in {*used, "id", "caption", "captions", "label"} and c != cfg.image_column]
    mapped = ds.select_columns(used).map(to_row, with_indices=True, remove_columns=used, keep_in_memory=True,
                                         desc="map columns")
    ds = datasets.concatenate_datasets([ds.remove_columns(drop), mapped], axis=1)
    return ds if cfg.image_column == "image" else ds.rename_column(cfg.image_column, "image")


def _label_name(ds: datasets.Dataset, column: str, value: object) -> object:
    """A ClassLabel's name rather than its integer, so that prompts read "dog", not "3"."""
    import datasets

    feature = ds.features[column]
    return feature.int2str(value) if isinstance(feature, datasets.ClassLabel) else value


def _open_hf(cfg: DataConfig) -> datasets.Dataset:
    """The configured split of a save_to_disk directory, an imagefolder, local data files or a hub dataset."""
    import datasets

    if not cfg.path:
        raise ValueError("the hf source needs data.path: a hub name, a save_to_disk directory, an imagefolder "
                         "directory or data files")
    local = Path(cfg.path).expanduser()
    cache = str(cache_dir(cfg) / "hf")
    if local.is_dir() and any((local / f).is_file() for f in ("dataset_info.json", "state.json",
                                                              "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(local))
        if isinstance(loaded, datasets.DatasetDict):
            if cfg.split not in loaded:
                raise ValueError(f"{local} has no split {cfg.split!r}; it has {list(loaded)}")
            loaded = loaded[cfg.split]
        return loaded
    if local.is_dir():
        return datasets.load_dataset("imagefolder", data_dir=str(local), split=cfg.split, cache_dir=cache)
    suffix = next((s for s in HF_FILE_FORMATS if cfg.path.endswith(s)), None)
    if suffix is not None:
        if not any(local.parent.glob(local.name)):
            raise ValueError(f"data file not found: {cfg.path}")
        return datasets.load_dataset(HF_FILE_FORMATS[suffix], data_files={cfg.split: str(local)}, split=cfg.split,
                                     cache_dir=cache)
    if hub_offline() or not hub_reachable(hub_endpoint()):
        raise ValueError(f"data.path {cfg.path!r} is no local directory or data file, and the Hugging Face hub "
                         f"cannot be reached (no network or HF_HUB_OFFLINE) to fetch it as a dataset name")
    return datasets.load_dataset(cfg.path, split=cfg.split, cache_dir=cache)
