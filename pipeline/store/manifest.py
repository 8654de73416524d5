"""``manifest.json``: what made an index, and what a query side must match to use it.

The manifest is typed (:mod:`.records`); this module reads and writes its JSON and keeps the format number.
A manifest of an older format this code still reads is upgraded on reading (:func:`_from_format_2`), never
guessed at; one of a format it does not know, or one that does not parse, is refused in one line that names
the file and says what to do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, ProjectorConfig, from_dict
from ..core.spaces import SpaceKey
from ..encoders import EncoderInfo
from .layout import MANIFEST, index_file
from .records import (
    AnchorRecord,
    Counts,
    FaissRecord,
    FileRecord,
    HistoryEntry,
    event_to_plain,
    read_event,
    read_record,
    space_key,
    to_plain,
)

logger = logging.getLogger(__name__)

# 3: typed records; history entries record the generation they published, re-anchorings their time. Later, and
#    compatibly (an optional field): ``files``, every published file's size and sha256 (empty in earlier ones).
# 2: vectors kept in shards/, thumbnails per shard, counts.text_langs; read by upgrading (_from_format_2).
# 1: refused (rebuild).
FORMAT_VERSION = 3
OLDEST_FORMAT = 2


class IndexMismatchError(ValueError):
    """An index does not fit the encoders or anchors it is asked to work with; the message says what differs."""


@dataclass
class Manifest:
    """What made an index, and what a query side must match to use it (``manifest.json``)."""

    encoders: dict[SpaceKey, EncoderInfo]  # the encoder that may query each space ("text", "text:es", "image")
    anchors: AnchorRecord
    projector: ProjectorConfig  # the projector options every space was fitted with
    faiss: FaissRecord
    counts: Counts
    package_version: str  # relspace version that wrote it
    config: Config | None = None  # the full config that built it; None for an index assembled without one
    stored_by: dict[SpaceKey, EncoderInfo] = field(default_factory=dict)  # the encoder of the stored vectors
    history: list[HistoryEntry] = field(default_factory=list)  # updates and re-anchorings, oldest first
    format_version: int = FORMAT_VERSION  # bumped when the directory layout or this file's shape changes
    generation: int = 0  # +1 on every publish of this directory (build, add, remove, reanchor); 0 in older indexes
    # every published file but this one, by path inside the index (shards by their shard.json, which holds their
    # files' checksums), recorded by pipeline.store.verify.record_files; empty in an index written before it
    files: dict[str, FileRecord] = field(default_factory=dict)
    # history entries before this one are published (and carry their generation); later ones await succeed()
    _published: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._published = len(self.history)

    def to_plain(self) -> dict[str, Any]:
        """The JSON object of ``manifest.json``."""
        data = {f.name: to_plain(getattr(self, f.name)) for f in fields(self) if f.init}
        data["config"] = data["config"] or {}  # as format 2 wrote an index without a config
        data["history"] = [event_to_plain(e) for e in self.history]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_plain(), indent=2, ensure_ascii=False)

    @classmethod
    def read(cls, index_dir: str | Path) -> Manifest:
        path = Path(index_dir) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{index_dir} is not a relspace index: {MANIFEST} is missing")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not valid JSON ({e}); the index is damaged: rebuild it") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} holds a JSON {type(data).__name__}, not a manifest object; rebuild the index")
        return cls.from_plain(data, str(path))

    @classmethod
    def from_plain(cls, data: dict[str, Any], where: str = MANIFEST) -> Manifest:
        """A manifest from the JSON object of ``where``, of this format or one it upgrades from.

        Raises:
            IndexMismatchError: a format this code does not read (older: rebuild; newer: upgrade relspace).
            ValueError: a field missing, unknown or ill-typed; the index is damaged.
        """
        version = data.get("format_version")
        if version == 2:
            logger.debug("%s: format 2, read by upgrading it to %d", where, FORMAT_VERSION)
            data = _from_format_2(data)
        elif version != FORMAT_VERSION:
            raise IndexMismatchError(f"{where}: {_unreadable(version)}")
        # Named by us: the TypeError of __init__ ("missing 1 required positional argument") speaks Python.
        names = [f.name for f in fields(cls) if f.init]
        required = [f.name for f in fields(cls) if f.init and f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"{where} lacks the required field {missing[0]!r}; the index is damaged: rebuild it")
        unknown = sorted(set(data) - set(names))
        try:
            if unknown:
                raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
            config = data.get("config", {})
            return cls(
                encoders=_encoders(data["encoders"], where, "encoders"),
                anchors=read_record(AnchorRecord, data["anchors"], where, "anchors."),
                projector=read_record(ProjectorConfig, data["projector"], where, "projector."),
                faiss=read_record(FaissRecord, data["faiss"], where, "faiss."),
                counts=read_record(Counts, data["counts"], where, "counts."),
                package_version=_scalar(data["package_version"], str, where, "package_version"),
                config=None if config == {} else from_dict(Config, config, where, "config."),
                stored_by=_encoders(data.get("stored_by", {}), where, "stored_by"),
                history=[read_event(e, where, f"history[{i}].")
                         for i, e in enumerate(_scalar(data.get("history", []), list, where, "history"))],
                generation=_scalar(data.get("generation", 0), int, where, "generation"),
                files={k: read_record(FileRecord, v, where, f"files.{k}.")
                       for k, v in _scalar(data.get("files", {}), dict, where, "files").items()},
            )
        except ConfigError as e:
            raise ValueError(f"{e}; the index is damaged: rebuild it") from None
        except TypeError as e:  # a nested record without a required field
            raise ValueError(f"{where}: a record lacks a field ({e}); the index is damaged: rebuild it") from None

    def succeed(self, index_dir: str | Path) -> None:
        """Take the generation after the one at ``index_dir`` (if any), so a directory's generations only grow.

        A server tags each answer with the generation that gave it; a rebuild over an index continues its count.
        History entries appended since this manifest was read or last published record that generation.
        """
        try:
            stored = json.loads((Path(index_dir) / MANIFEST).read_text()).get("generation", 0)
        except (OSError, ValueError, AttributeError):  # no index there yet, or one too damaged to count on
            stored = 0
        self.generation = max(self.generation, stored if isinstance(stored, int) else 0) + 1
        new = self.history[self._published:]
        self.history[self._published:] = [replace(e, generation=self.generation) for e in new]
        self._published = len(self.history)

    @property
    def spaces(self) -> list[SpaceKey]:
        """The relative spaces the index holds a projector for."""
        return list(self.anchors.spaces)

    def encoder_key(self, space: SpaceKey) -> SpaceKey:
        """The encoder entry that serves ``space``: a language's own encoder, else its modality's shared one."""
        return space if space in self.encoders else space.shared

    def check(self, modality: str | SpaceKey, spec: str | None = None, dim: int | None = None) -> None:
        """Refuse a query encoder that differs from the one the index was built with, saying how.

        ``modality`` names the encoder entry: ``"text"``, ``"image"`` or a language's (``"text:es"``).
        """
        rec = self.encoders.get(modality if isinstance(modality, SpaceKey) else SpaceKey.parse(modality))
        if rec is None:
            raise IndexMismatchError(f"the index has no {modality} encoder")
        if spec is not None and spec != rec.spec:
            raise IndexMismatchError(
                f"{modality} encoder mismatch: the index was built with {rec.spec!r}, the query uses "
                f"{spec!r}; relative vectors from different encoders are not comparable without re-anchoring"
            )
        if dim is not None and dim != rec.dim:
            raise IndexMismatchError(
                f"{modality} encoder dim mismatch: the index expects {rec.dim}, the encoder gives {dim}"
            )

    def check_dims(self, index_dir: str | Path, dims: dict[SpaceKey, int]) -> None:
        """Refuse projectors that read another dimension than the encoder of their space gives."""
        for space, dim in dims.items():
            rec = self.encoders[self.encoder_key(space)]
            if dim != rec.dim:
                raise ValueError(f"{index_dir}: projector {str(space)!r} reads dim {dim}, but its encoder "
                                 f"{rec.spec!r} has dim {rec.dim}")

    def check_counts(self, index_dir: str | Path, stored: dict[str, int], rows: dict[str, int]) -> None:
        """Refuse an index whose files disagree on vector counts with each other or the manifest (a mixed-up copy)."""
        for modality, n in stored.items():
            if rows[modality] != n:
                raise ValueError(f"{index_dir}: {modality} index holds {n} vectors but {rows[modality]} metadata "
                                 f"rows; the directory is inconsistent")
            if self.counts.vectors(modality) != n:
                raise ValueError(
                    f"{Path(index_dir) / MANIFEST} records {self.counts.vectors(modality)} {modality} vectors, but "
                    f"{index_file(modality)} holds {n}; the directory is inconsistent: rebuild the index"
                )

    def check_anchors(self, anchor_hash: str) -> None:
        if anchor_hash != self.anchors.hash:
            raise IndexMismatchError(
                f"anchor set mismatch: the index was built on anchors {self.anchors.hash[:12]}… "
                f"({self.anchors.count} anchors), the query side uses {anchor_hash[:12]}…"
            )


def _unreadable(version: Any) -> str:
    """Why a manifest's format is not read, and what to do: one clause."""
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        return (f"index format {version} is newer than this relspace reads (formats {OLDEST_FORMAT} to "
                f"{FORMAT_VERSION}); upgrade relspace, or rebuild the index with this version")
    return (f"index format {version!r} is not one this relspace reads (formats {OLDEST_FORMAT} to "
            f"{FORMAT_VERSION}); rebuild the index with this relspace")


def _from_format_2(data: dict[str, Any]) -> dict[str, Any]:
    """A format-2 manifest as format 3: the same JSON, less what format 3 added, which is read as unknown.

    Its history entries lack the generation they published (None), re-anchorings lack their time (None), and
    re-anchorings written before entries named their operation lack ``op``. The rest maps field by field
    (anchors of hand-assembled indexes, without strategy or pooling, read None and "mean", as reanchor assumed).
    """
    history = data.get("history", [])
    if isinstance(history, list):
        history = [{"op": "reanchor", "at": None, **e} if isinstance(e, dict) and e.get("op", "reanchor") == "reanchor"
                   else e for e in history]
    return {**data, "history": history, "format_version": FORMAT_VERSION}


def _encoders(data: Any, where: str, key: str) -> dict[SpaceKey, EncoderInfo]:
    """Encoder records by space key, as under ``encoders`` and ``stored_by``."""
    return {space_key(k, where, f"{key}.{k}"): read_record(EncoderInfo, v, where, f"{key}.{k}.")
            for k, v in _scalar(data, dict, where, key).items()}


def _scalar(value: Any, tp: type, where: str, key: str) -> Any:
    """``value`` if it is a ``tp`` (a bool is no int), else the config's error naming ``key``."""
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key!r} must be {tp.__name__}, got {value!r}")
    return value
