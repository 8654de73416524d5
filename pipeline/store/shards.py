"""Shards: the unit a streaming build writes and resumes from, and that the index builder merges.

A shard is a directory holding one block of items: each modality's relative vectors (``.npy``, memory-mapped
on read, never pickle), their item rows (parquet) and optional thumbnails. It is written under a temporary
name and renamed into place only when complete. Its ``shard.json`` records the source row range, the source
fingerprint and the anchor hash, and the size and SHA-256 of every file, so a stale, truncated or missing
shard is detected and rebuilt, never silently used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.hashing import file_sha256
from ..core.io import read_parquet
from ..core.spaces import MODALITIES
from .layout import SHARD_META, SHARD_NAME, SHARDS, THUMBNAILS, items_file, shard_name, shard_temp, vectors_file

logger = logging.getLogger(__name__)

# The columns every item table has, with their one type; any other column is source metadata, whose type
# is normalised by ``item_type`` (the same on every write, whatever format the rows were read from).
ITEM_COLUMNS = {"image": ("id", "caption"), "text": ("id", "lang", "caption")}


def item_type(t: Any) -> Any:
    """The one Arrow type an item column is stored with: 64-bit offsets, views and dictionaries folded to
    their plain forms, integers to int64 and floats to float64, recursively through lists and structs.

    A CSV and a JSONL file of the same columns come out of 🤗 datasets as ``string`` and ``large_string``
    (or int32 and int64); shards of both must merge into one table.
    """
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_large_string(t) or pt.is_string_view(t):
        return pa.string()
    if pt.is_large_binary(t) or pt.is_binary_view(t):
        return pa.binary()
    if pt.is_dictionary(t):
        return item_type(t.value_type)
    if pt.is_integer(t):
        return pa.int64()
    if pt.is_floating(t):
        return pa.float64()
    if pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t) or pt.is_list_view(t):
        return pa.list_(item_type(t.value_type))
    if pt.is_struct(t):
        return pa.struct([pa.field(f.name, item_type(f.type)) for f in t])
    return t


def normalise_items(table: Any, modality: str) -> Any:
    """``table`` cast to the item schema: the fixed columns as strings, metadata by ``item_type``."""
    import pyarrow as pa

    fixed = ITEM_COLUMNS[modality]
    fields = [pa.field(f.name, pa.string() if f.name in fixed else item_type(f.type)) for f in table.schema]
    schema = pa.schema(fields)
    return table if schema.equals(table.schema) else table.cast(schema)


class ShardError(ValueError):
    """A shard that must not be used: incomplete, damaged, or made from other data or anchors."""


class StoredVectors:
    """One modality's vectors in a shard file, read a slice at a time and never kept mapped.

    A pass over many shards (the training sample, FAISS adds, exact ground truth) then holds one slice at a
    time: a memory map left open counts every page it has touched in the process's RSS, which would make a
    million-row build look as large as its vectors on disk.
    """

    def __init__(self, path: Path):
        self.path = path
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        self.shape, self.dtype = tuple(mapped.shape), mapped.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(np.load(self.path, mmap_mode="r", allow_pickle=False)[key])  # a copy; the map is closed

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)


@dataclass
class ShardPayload:
    """What a shard holds, in memory: per modality the (n, m) relative vectors and their item rows."""

    vectors: dict[str, np.ndarray]  # modality -> float32 (n, m)
    items: dict[str, Any]  # modality -> pyarrow.Table aligned with vectors
    thumbnails: Any = None  # pyarrow.Table (id, png) or None


@dataclass
class Shard:
    """A complete shard on disk, as recorded in its ``shard.json``."""

    path: Path
    rows: list[int]  # [start, end) of the source rows it was made from
    source: str  # fingerprint of the source data
    anchors: str  # hash of the anchor set its vectors are relative to
    counts: dict[str, int]  # vectors per modality
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"bytes", "sha256"}

    def vectors(self, modality: str) -> StoredVectors:
        """The relative vectors of ``modality``, read from disk when sliced (``np.asarray`` reads them all)."""
        return StoredVectors(self.path / vectors_file(modality))

    def items(self, modality: str) -> Any:
        return read_parquet(self.path / items_file(modality), f"{modality} item table of shard {self.path}")

    def thumbnails(self) -> Any:
        path = self.path / THUMBNAILS
        return read_parquet(path, f"thumbnail table of shard {self.path}") if path.is_file() else None


def write_shard(root: Path, number: int, payload: ShardPayload, *, rows: tuple[int, int], source: str,
                anchors: str) -> Shard:
    """Write ``payload`` as shard ``number`` under ``root``, atomically (a rename publishes it whole)."""
    import pyarrow.parquet as pq

    final = root / shard_name(number)
    tmp = root / shard_temp(number, os.getpid())
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for m in MODALITIES:
        vecs = np.ascontiguousarray(payload.vectors[m], dtype=np.float32)
        if len(vecs) != payload.items[m].num_rows:
            raise ValueError(f"shard {final.name}: {len(vecs)} {m} vectors but {payload.items[m].num_rows} rows")
        np.save(tmp / vectors_file(m), vecs, allow_pickle=False)
        pq.write_table(normalise_items(payload.items[m], m), tmp / items_file(m))
    if payload.thumbnails is not None:  # PNG is compressed already; uncompressed parquet reads zero-copy
        pq.write_table(payload.thumbnails, tmp / THUMBNAILS, compression="none")
    files = {f.name: {"bytes": f.stat().st_size, "sha256": file_sha256(f)} for f in sorted(tmp.iterdir())}
    shard = Shard(final, list(rows), source, anchors, {m: len(payload.vectors[m]) for m in MODALITIES}, files)
    meta = {k: v for k, v in asdict(shard).items() if k != "path"}
    (tmp / SHARD_META).write_text(json.dumps(meta, indent=1))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # a damaged or stale shard of the same number: replaced, never mixed in
        shutil.rmtree(final)
    os.rename(tmp, final)
    return shard


def read_shard(path: Path, *, source: str | None = None, anchors: str | None = None,
               rows: tuple[int, int] | None = None, verify: bool = True) -> Shard:
    """Open a shard, checking every file against its record (and, if given, its source, anchors and rows).

    ``verify=False`` reads the record only, without hashing the files: for a reader of a published index
    (its loads must not read every vector file), whose shards were checked when they were written and merged.

    Raises:
        ShardError: the shard is missing, incomplete, damaged or stale; the message says which and why.
    """
    shard = read_meta(path)
    for name, rec in shard.files.items() if verify else ():
        f = path / name
        if not f.is_file():
            raise ShardError(f"shard {path}: {name} is missing")
        if f.stat().st_size != rec["bytes"] or file_sha256(f) != rec["sha256"]:
            raise ShardError(f"shard {path}: {name} is damaged (size or checksum differs from {SHARD_META})")
    expected = {"source": source, "anchors": anchors, "rows": None if rows is None else list(rows)}
    for key, want in expected.items():
        if want is not None and getattr(shard, key) != want:
            raise ShardError(f"shard {path} is stale: its {key} is {getattr(shard, key)!r}, not {want!r}")
    return shard


def read_meta(path: Path) -> Shard:
    """A shard's record from its ``shard.json``, its fields checked but not its files (see :func:`read_shard`).

    Raises:
        ShardError: ``shard.json`` is missing, not JSON, or lacks a field or has one of the wrong type
            (``{}`` once gave ``KeyError: 'counts'``); the message names the file.
    """
    meta_path = path / SHARD_META
    if not meta_path.is_file():
        raise ShardError(f"shard {path} is incomplete: {SHARD_META} is missing")
    try:
        meta = json.loads(meta_path.read_text())
        shard = Shard(path, **meta)
        counts = shard.counts
        if not (isinstance(counts, dict) and all(isinstance(counts.get(m), int) for m in MODALITIES)):
            raise TypeError(f"counts must give an integer for each of {list(MODALITIES)}, got {counts!r}")
        if not isinstance(shard.files, dict):
            raise TypeError(f"files must be an object, got {shard.files!r}")
    except (ValueError, TypeError) as e:
        raise ShardError(f"{meta_path} is damaged ({e}); rebuild the index") from None
    return shard


def list_shards(root: Path) -> list[Path]:
    """Shard directories under ``root`` in order (temporary, unfinished ones are not listed)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and SHARD_NAME.match(p.name)) if root.is_dir() else []


def open_shards(index_dir: Path) -> list[Shard]:
    """Every shard of an index directory, checked: the index builder never merges a damaged one."""
    paths = list_shards(index_dir / SHARDS)
    if not paths:
        raise ShardError(f"{index_dir} has no {SHARDS}/ directory of vectors; rebuild the index with this relspace")
    return [read_shard(p) for p in paths]
