"""The item tables of an index: metadata rows aligned with the FAISS ids, hits built from them, thumbnails."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.io import map_file, read_parquet
from .layout import SHARDS, THUMBNAILS
from .shards import list_shards, read_meta


@dataclass
class Hit:
    """One search result: the item's id, cosine score in the relative space, modality and metadata."""

    id: str  # item id, as in the data source
    score: float  # cosine similarity of the relative vectors (higher is closer)
    modality: str  # "image" or "text": what was found
    caption: str | None = None  # the item's caption (for text hits: the matched caption)
    lang: str | None = None  # language of a text hit's caption
    metadata: dict[str, Any] = field(default_factory=dict)  # other columns of the source (e.g. char)
    # text hits: the item's matched captions by language, best first ({lang: caption}); a caption search over
    # every language returns each item once with all of them (store/grouping.py), else the one caption found
    captions: dict[str, str] | None = None

    @property
    def langs(self) -> list[str]:
        """The languages this hit matched in, best first (none for an image hit)."""
        return list(self.captions or ([self.lang] if self.lang else []))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:  # hits also read like dicts: hit["id"]
        return getattr(self, key) if key in self.__dataclass_fields__ else self.metadata[key]


class ItemTables:
    """Row r of ``tables[m]`` describes vector r of modality m's FAISS index; lookups are built lazily, once.

    Every file is opened here, at load: a later lookup never reopens ``index_dir`` by name, since an update may
    have replaced the directory by then (and its shard ``000001`` may hold other rows), so one loaded index
    answers from one version only.
    """

    def __init__(self, tables: dict[str, Any], index_dir: Path):
        self.tables, self.index_dir = tables, index_dir
        self._row_of_id: dict[str, int] | None = None
        self._image_row_of_text: np.ndarray | None = None
        self._lang_masks: dict[str, np.ndarray] = {}
        self._thumbnail_shards = _map_thumbnails(index_dir)  # (first image row, shard's mapped file or None, path)
        self._thumbnail_tables: dict[int, Any] = {}

    def hits(self, modality: str, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
        """Hits for one query's FAISS result (scores and rows, best first)."""
        keep = rows >= 0  # FAISS pads with -1 when fewer than k results pass a filter
        rows = rows[keep].astype(np.int64)
        recs = _take(self.tables[modality], rows).to_pylist()
        if modality == "text":  # a caption is an item's too: its metadata lives in the image table
            meta = _take(self.tables["image"], self._image_rows_of_text()[rows])
            meta = meta.drop_columns([c for c in ("id", "caption") if c in meta.column_names])
            for rec, extra in zip(recs, meta.to_pylist()):
                rec.update({key: value for key, value in extra.items() if key not in rec})
        hits = []
        for score, rec in zip(scores[keep], recs):
            item_id, caption, lang = rec.pop("id"), rec.pop("caption", None), rec.pop("lang", None)
            hits.append(Hit(item_id, float(score), modality, caption, lang, rec,
                            {lang: caption or ""} if lang is not None else None))
        return hits

    def _image_rows_of_text(self) -> np.ndarray:
        """For each caption row, the row of its item in the image table (computed once, vectorised)."""
        if self._image_row_of_text is None:
            import pyarrow.compute as pc

            rows = pc.index_in(self.tables["text"].column("id"), value_set=self.tables["image"].column("id"))
            if rows.null_count:
                raise ValueError(f"{rows.null_count} captions have no item in the image table")
            self._image_row_of_text = rows.to_numpy(zero_copy_only=False).astype(np.int64)
        return self._image_row_of_text

    def in_lang(self, lang: str) -> np.ndarray:
        """Boolean mask over the caption rows that are in ``lang`` (a FAISS filter), computed once per language."""
        if lang not in self._lang_masks:
            import pyarrow.compute as pc

            column = self.tables["text"].column("lang")
            self._lang_masks[lang] = pc.equal(column, lang).to_numpy(zero_copy_only=False).astype(bool)
        return self._lang_masks[lang]

    def row_of(self, item_id: str) -> int | None:
        """The image-table row (= image FAISS id) of an item, or None if the id is unknown."""
        if self._row_of_id is None:
            self._row_of_id = {v: i for i, v in enumerate(self.tables["image"].column("id").to_pylist())}
        return self._row_of_id.get(item_id)

    def item(self, item_id: str) -> dict[str, Any] | None:
        """An item's metadata (from the image table), or None if the id is unknown."""
        row = self.row_of(item_id)
        return None if row is None else self.tables["image"].slice(row, 1).to_pylist()[0]

    def thumbnail(self, item_id: str) -> bytes | None:
        """The stored PNG thumbnail of an item, or None; decoded from its shard's mapped file on demand."""
        row = self.row_of(item_id)
        if row is None or not self._thumbnail_shards:
            return None
        i = int(np.searchsorted([f for f, _, _ in self._thumbnail_shards], row, side="right")) - 1
        first, data, path = self._thumbnail_shards[i]
        if i not in self._thumbnail_tables:
            self._thumbnail_tables[i] = None if data is None else read_parquet(path, "thumbnail table", data=data)
        table = self._thumbnail_tables[i]
        if table is None or row - first >= table.num_rows:
            return None
        rec = table.slice(row - first, 1).to_pylist()[0]
        return rec["png"] if rec["id"] == item_id else None


def _map_thumbnails(index_dir: Path) -> list[tuple[int, Any, Path]]:
    """Each shard's first image row, its thumbnail file mapped now (None if it has none), and that file's path."""
    out, first = [], 0
    for path in list_shards(index_dir / SHARDS):
        file = path / THUMBNAILS
        out.append((first, map_file(file) if file.is_file() else None, file))
        first += read_meta(path).counts["image"]
    return out


def _take(table: Any, rows: np.ndarray) -> Any:
    """Rows of a table, in order. A search's few hits are sliced one by one: ``Table.take`` on a table of many
    chunks (a memory-mapped parquet file) costs milliseconds per call at a million rows, slices microseconds."""
    import pyarrow as pa

    if len(rows) > 256 or table.num_rows == 0:
        return table.take(rows)
    return pa.concat_tables([table.slice(int(r), 1) for r in rows]) if len(rows) else table.slice(0, 0)
