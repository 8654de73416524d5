"""The item tables of an index: metadata rows aligned with the FAISS ids, hits built from them, thumbnails."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .files import read_parquet


@dataclass
class Hit:
    """One search result: the item's id, cosine score in the relative space, modality and metadata."""

    id: str  # item id, as in the data source
    score: float  # cosine similarity of the relative vectors (higher is closer)
    modality: str  # "image" or "text": what was found
    caption: str | None = None  # the item's caption (for text hits: the matched caption)
    lang: str | None = None  # language of a text hit's caption
    metadata: dict[str, Any] = field(default_factory=dict)  # other columns of the source (e.g. char)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:  # hits also read like dicts: hit["id"]
        return getattr(self, key) if key in self.__dataclass_fields__ else self.metadata[key]


class ItemTables:
    """Row r of ``tables[m]`` describes vector r of modality m's FAISS index; lookups are built lazily, once."""

    def __init__(self, tables: dict[str, Any], thumbnails: Path):
        self.tables, self.thumbnails_path = tables, thumbnails
        self._row_of_id: dict[str, int] | None = None
        self._image_row_of_text: np.ndarray | None = None
        self._thumbnails: dict[str, bytes] | None = None

    def hits(self, modality: str, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
        """Hits for one query's FAISS result (scores and rows, best first)."""
        keep = rows >= 0  # FAISS pads with -1 when fewer than k results pass a filter
        rows = rows[keep].astype(np.int64)
        recs = self.tables[modality].take(rows).to_pylist()
        if modality == "text":  # a caption is an item's too: its metadata lives in the image table
            meta = self.tables["image"].take(self._image_rows_of_text()[rows])
            meta = meta.drop_columns([c for c in ("id", "caption") if c in meta.column_names])
            for rec, extra in zip(recs, meta.to_pylist()):
                rec.update({key: value for key, value in extra.items() if key not in rec})
        hits = []
        for score, rec in zip(scores[keep], recs):
            item_id, caption, lang = rec.pop("id"), rec.pop("caption", None), rec.pop("lang", None)
            hits.append(Hit(item_id, float(score), modality, caption, lang, rec))
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

    def item(self, item_id: str) -> dict[str, Any] | None:
        """An item's metadata (from the image table), or None if the id is unknown."""
        if self._row_of_id is None:
            self._row_of_id = {v: i for i, v in enumerate(self.tables["image"].column("id").to_pylist())}
        row = self._row_of_id.get(item_id)
        return None if row is None else self.tables["image"].slice(row, 1).to_pylist()[0]

    def thumbnail(self, item_id: str) -> bytes | None:
        """The stored PNG thumbnail of an item, or None."""
        if self._thumbnails is None:
            table = read_parquet(self.thumbnails_path, "thumbnail table") if self.thumbnails_path.is_file() else None
            self._thumbnails = {} if table is None else dict(
                zip(table.column("id").to_pylist(), table.column("png").to_pylist())
            )
        return self._thumbnails.get(item_id)
