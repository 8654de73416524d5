"""The typed records of ``manifest.json`` (anchors, counts, FAISS choice, history) and their one JSON mapping.

Each record is written by one stage and read by several (build, update, reanchor, load, ``relspace info``,
the server), so it is a dataclass: a reader names a field, never a string key. :func:`to_plain` and
:func:`read_record` are the only places that know the JSON form; a JSON key that differs from its field
name (``from``, a Python keyword) is given by the field's ``key`` metadata.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ..config import ConfigError, from_dict
from ..core.spaces import Modality, SpaceKey

T = TypeVar("T")

OMIT_NONE = {"omit_none": True}  # a field left out of the JSON while it is None (a candidate's reason, build_s)


@dataclass(frozen=True)
class AnchorRecord:
    """The anchor set an index was built on: a query side must use the same one (by hash)."""

    hash: str  # sha256 of the anchor set (ids, images, captions)
    count: int  # anchors in the set
    spaces: list[SpaceKey]  # the relative spaces with a projector, in the projector file's order
    strategy: str | None = None  # the selector that chose them; None: not recorded (a hand-written index)
    caption_pooling: Literal["mean", "first"] = "mean"  # an anchor's text side from several captions
    per_language: dict[str, int] = field(default_factory=dict)  # anchors with a caption, per language


@dataclass(frozen=True)
class Counts:
    """What the published directory holds; filled in by the publish, from what it actually wrote."""

    skipped: int = 0  # bad rows of the data left out (listed in skipped.parquet)
    items: int = 0  # rows of the image item table
    text: int = 0  # caption vectors in text.faiss
    image: int = 0  # image vectors in image.faiss
    text_langs: dict[str, int] = field(default_factory=dict)  # caption vectors per language, in the build's order
    shards: int = 0  # shard directories under shards/

    def vectors(self, modality: str) -> int:
        """Vectors stored for ``modality``."""
        return self.image if modality == "image" else self.text


@dataclass(frozen=True)
class CandidateRow:
    """One FAISS candidate the auto choice considered, with what it measured or why it was passed over."""

    name: str  # candidate name in pipeline.ann.candidates
    key: str  # its FAISS factory string at this size
    params: dict[str, int | float]  # tuned search parameters (nprobe, efSearch, k_factor)
    estimated_bytes: int  # index size from the candidate's formula
    peak_bytes: int  # estimated build peak: index, one add batch, training sample, queries
    bytes: int | None  # serialised size once built; None: not built
    p50_ms: float | None  # single-thread query time, median
    p99_ms: float | None
    recall_at_10: float | None  # recall@k against exact search on the held-out queries
    build_s: float | None = field(default=None, metadata=OMIT_NONE)  # build time; absent when not built
    reason: str | None = field(default=None, metadata=OMIT_NONE)  # why it was not chosen; absent when it passed


@dataclass(frozen=True)
class BudgetRecord:
    """The budgets the auto choice ran under (``pipeline.ann.auto.IndexBudget``)."""

    max_memory: int | None  # bytes
    max_query_ms: float | None
    recall: float
    k: int


@dataclass(frozen=True)
class AutoChoice(CandidateRow):
    """``index.factory: auto``'s choice for one modality: the chosen row, every row tried, and the setting."""

    candidates: list[CandidateRow] = field(default_factory=list)  # in the order tried; the chosen one last
    budget: BudgetRecord | None = None
    queries: int | None = None  # cross-modal queries it was tuned and measured on
    n: int | None = None  # vectors indexed


@dataclass(frozen=True)
class FaissRecord:
    """How the FAISS indexes were made: the factory string as configured, and auto's choice per modality."""

    factory: str  # index_factory string, or "auto"
    metric: Literal["inner_product"] = "inner_product"
    normalized: bool = True  # vectors are L2-normalised, so inner product is cosine
    auto: dict[Modality, AutoChoice] = field(default_factory=dict)  # empty unless factory is "auto"


@dataclass(frozen=True)
class FileRecord:
    """A published file's size and checksum, as the publish wrote it: ``relspace verify`` compares both, a load
    the size alone (a stat, so every load can afford it)."""

    bytes: int  # size in bytes
    sha256: str  # hex digest of the contents (pipeline.core.hashing.file_sha256)


def timestamp() -> str:
    """Local time with its offset, as history entries record it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class UpdateEvent:
    """An add, remove or upsert published in place."""

    added: int  # items given to add (upserted ones included)
    removed: int  # items taken out (upserted ones included)
    upserted: int  # added items that replaced one with the same id
    at: str | None  # when (:func:`timestamp`); None in a format-2 entry that lacks it
    generation: int | None = None  # the generation it published; None until published, and in format-2 entries


@dataclass(frozen=True)
class ReanchorEvent:
    """A query encoder swapped by re-embedding the anchors."""

    space: SpaceKey = field(metadata={"key": "modality"})  # the encoder entry swapped ("text", "text:es", "image")
    from_spec: str = field(metadata={"key": "from"})  # the encoder it replaced
    to_spec: str = field(metadata={"key": "to"})  # the new encoder
    anchors: int  # anchors re-embedded
    at: str | None  # as in UpdateEvent
    generation: int | None = None  # as in UpdateEvent


HistoryEntry = UpdateEvent | ReanchorEvent
EVENTS: dict[str, type[UpdateEvent] | type[ReanchorEvent]] = {"update": UpdateEvent, "reanchor": ReanchorEvent}


def event_to_plain(event: HistoryEntry) -> dict[str, Any]:
    """A history entry as JSON, its operation first under ``op``."""
    op = next(name for name, cls in EVENTS.items() if isinstance(event, cls))
    return {"op": op, **to_plain(event)}


def read_event(data: Any, where: str, prefix: str) -> HistoryEntry:
    """A history entry from its JSON, by its ``op``."""
    op = data.get("op") if isinstance(data, dict) else None
    if op not in EVENTS:
        raise ConfigError(f"{where}: {prefix.rstrip('.')!r} has an unknown operation {op!r}; known: "
                          f"{', '.join(EVENTS)}")
    return read_record(EVENTS[op], {k: v for k, v in data.items() if k != "op"}, where, prefix)


def to_plain(obj: Any) -> Any:
    """A record as JSON-able values: space keys as their text, fields under their JSON keys."""
    if isinstance(obj, SpaceKey):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.metadata.get("key", f.name): to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.init and not (f.metadata.get("omit_none") and getattr(obj, f.name) is None)}
    if isinstance(obj, dict):
        return {str(k) if isinstance(k, SpaceKey) else k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def read_record(cls: type[T], data: Any, where: str, prefix: str = "") -> T:
    """Record ``cls`` from its JSON, with the config's checks: unknown keys and ill-typed values are refused.

    Raises:
        ConfigError: naming ``where`` and the key (``prefix`` + key).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'top level'} must be a mapping, got {data!r}")
    names = {f.metadata.get("key", f.name): f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    required = [f.metadata.get("key", f.name) for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where}: {prefix + missing[0]!r} is missing")
    hints = typing.get_type_hints(cls)
    fields = {names.get(k, k): v for k, v in data.items()}
    for name, value in fields.items():  # a space key's text, as the fields from_dict checks and builds it from
        if hints.get(name) == SpaceKey:
            fields[name] = _space_fields(value, where, prefix + name)
        elif hints.get(name) == list[SpaceKey] and isinstance(value, list):
            fields[name] = [_space_fields(v, where, f"{prefix}{name}[{i}]") for i, v in enumerate(value)]
    return from_dict(cls, fields, where, prefix)


def space_key(value: Any, where: str, key: str) -> SpaceKey:
    """A space key from its text (``"text:es"``), refusing anything else by ``key``."""
    why = f"got {value!r}"
    if isinstance(value, str):
        try:
            return SpaceKey.parse(value)
        except ValueError as e:
            why = str(e)
    raise ConfigError(f"{where}: {key!r} must be a space key such as 'image' or 'text:en'; {why}")


def _space_fields(value: Any, where: str, key: str) -> dict[str, Any]:
    return dataclasses.asdict(space_key(value, where, key))
