"""``manifest.json``: what made an index, and what a query side must match to use it."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.spaces import SpaceKey
from .layout import MANIFEST, index_file

FORMAT_VERSION = 2  # 2: vectors kept in shards/, thumbnails per shard, counts.text_langs


class IndexMismatchError(ValueError):
    """An index does not fit the encoders or anchors it is asked to work with; the message says what differs."""


@dataclass
class Manifest:
    """What made an index, and what a query side must match to use it (``manifest.json``)."""

    encoders: dict[str, dict[str, Any]]  # modality -> EncoderInfo dict of the encoder that may query it
    anchors: dict[str, Any]  # {"hash": sha256 of the anchor set, "count": m}
    projector: dict[str, Any]  # ProjectorConfig options
    faiss: dict[str, Any]  # {"factory": ..., "metric": "inner_product"}
    counts: dict[str, Any]  # vectors stored per modality, items, and each language's row range in text.faiss
    package_version: str  # relspace version that wrote it
    config: dict[str, Any] = field(default_factory=dict)  # the full config that built it
    stored_by: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> encoder of the stored vectors
    history: list[dict[str, Any]] = field(default_factory=list)  # update and re-anchoring events, oldest first
    format_version: int = FORMAT_VERSION  # bumped when the directory layout changes
    generation: int = 0  # +1 on every publish of this directory (build, add, remove, reanchor); 0 in older indexes

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False, default=str)

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
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexMismatchError(
                f"{path}: index format version {data.get('format_version')} is not the supported "
                f"{FORMAT_VERSION}; rebuild the index with this relspace"
            )
        # Named by us: the TypeError of __init__ ("missing 1 required positional argument") speaks Python.
        required = [f.name for f in cls.__dataclass_fields__.values()
                    if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"{path} lacks the required field {missing[0]!r}; the index is damaged: rebuild it")
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def succeed(self, index_dir: str | Path) -> None:
        """Take the generation after the one at ``index_dir`` (if any), so a directory's generations only grow.

        A server tags each answer with the generation that gave it; a rebuild over an index continues its count.
        """
        try:
            stored = json.loads((Path(index_dir) / MANIFEST).read_text()).get("generation", 0)
        except (OSError, ValueError, AttributeError):  # no index there yet, or one too damaged to count on
            stored = 0
        self.generation = max(self.generation, stored if isinstance(stored, int) else 0) + 1

    @property
    def spaces(self) -> list[SpaceKey]:
        """The relative spaces the index holds a projector for."""
        return [SpaceKey.parse(s) for s in self.anchors["spaces"]]

    def encoder_key(self, space: SpaceKey) -> SpaceKey:
        """The encoder entry that serves ``space``: a language's own encoder, else its modality's shared one."""
        return space if str(space) in self.encoders else space.shared

    def check(self, modality: str, spec: str | None = None, dim: int | None = None) -> None:
        """Refuse a query encoder that differs from the one the index was built with, saying how."""
        rec = self.encoders.get(modality)
        if rec is None:
            raise IndexMismatchError(f"the index has no {modality} encoder")
        if spec is not None and spec != rec["spec"]:
            raise IndexMismatchError(
                f"{modality} encoder mismatch: the index was built with {rec['spec']!r}, the query uses "
                f"{spec!r}; relative vectors from different encoders are not comparable without re-anchoring"
            )
        if dim is not None and dim != rec["dim"]:
            raise IndexMismatchError(
                f"{modality} encoder dim mismatch: the index expects {rec['dim']}, the encoder gives {dim}"
            )

    def check_dims(self, index_dir: str | Path, dims: dict[SpaceKey, int]) -> None:
        """Refuse projectors that read another dimension than the encoder of their space gives."""
        for space, dim in dims.items():
            rec = self.encoders[str(self.encoder_key(space))]
            if dim != rec["dim"]:
                raise ValueError(f"{index_dir}: projector {str(space)!r} reads dim {dim}, but its encoder "
                                 f"{rec['spec']!r} has dim {rec['dim']}")

    def check_counts(self, index_dir: str | Path, stored: dict[str, int], rows: dict[str, int]) -> None:
        """Refuse an index whose files disagree on vector counts with each other or the manifest (a mixed-up copy)."""
        for modality, n in stored.items():
            if rows[modality] != n:
                raise ValueError(f"{index_dir}: {modality} index holds {n} vectors but {rows[modality]} metadata "
                                 f"rows; the directory is inconsistent")
            if self.counts.get(modality) != n:
                raise ValueError(
                    f"{Path(index_dir) / MANIFEST} records {self.counts.get(modality)} {modality} vectors, but "
                    f"{index_file(modality)} holds {n}; the directory is inconsistent: rebuild the index"
                )

    def check_anchors(self, anchor_hash: str) -> None:
        if anchor_hash != self.anchors["hash"]:
            raise IndexMismatchError(
                f"anchor set mismatch: the index was built on anchors {self.anchors['hash'][:12]}… "
                f"({self.anchors['count']} anchors), the query side uses {anchor_hash[:12]}…"
            )
