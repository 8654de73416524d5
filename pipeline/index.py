"""FAISS indexes on relative vectors, the manifest beside them, and atomic writes of the index directory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .progress import progress

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
ADD_BATCH = 65_536


class IndexMismatchError(ValueError):
    """An index does not fit the encoders or anchors it is asked to work with; the message says what differs."""


def build_faiss(xb: np.ndarray, factory: str = "Flat", train_size: int = 100_000, seed: int = 0) -> Any:
    """Create an inner-product FAISS index from a factory string, train it if needed, and add ``xb``.

    Inner product on L2-normalised relative vectors is cosine similarity, so every factory uses
    ``METRIC_INNER_PRODUCT``.
    """
    import faiss

    xb = np.ascontiguousarray(xb, dtype=np.float32)
    try:
        index = faiss.index_factory(xb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ValueError(f"invalid FAISS factory string {factory!r}: {str(e).splitlines()[-1]}") from None
    if not index.is_trained:
        if len(xb) == 0:
            raise ValueError(f"FAISS index {factory!r} needs training vectors, but there are none")
        rng = np.random.default_rng(seed)
        sample = xb if len(xb) <= train_size else xb[rng.choice(len(xb), train_size, replace=False)]
        logger.info("training FAISS %s on %d vectors", factory, len(sample))
        index.train(sample)
    with progress(total=len(xb), desc=f"FAISS add ({factory})") as bar:
        for start in range(0, len(xb), ADD_BATCH):
            index.add(xb[start : start + ADD_BATCH])
            bar.update(min(ADD_BATCH, len(xb) - start))
    return index


def write_faiss(index: Any, path: str | Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def read_faiss(path: str | Path) -> Any:
    import faiss

    if not Path(path).is_file():
        raise FileNotFoundError(f"FAISS index file missing: {path}")
    return faiss.read_index(str(path))


def search_faiss(index: Any, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search ``k`` neighbours, clipping k to the index size (FAISS pads with -1 otherwise)."""
    k = max(1, min(int(k), index.ntotal))
    return index.search(np.ascontiguousarray(xq, dtype=np.float32), k)


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
    history: list[dict[str, Any]] = field(default_factory=list)  # re-anchoring events, oldest first
    format_version: int = FORMAT_VERSION  # bumped when the directory layout changes

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False, default=str)

    @classmethod
    def read(cls, index_dir: str | Path) -> Manifest:
        path = Path(index_dir) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{index_dir} is not a relspace index: {MANIFEST} is missing")
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexMismatchError(
                f"{path}: index format version {data.get('format_version')} is not the supported "
                f"{FORMAT_VERSION}; rebuild the index with this relspace"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

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

    def check_anchors(self, anchor_hash: str) -> None:
        if anchor_hash != self.anchors["hash"]:
            raise IndexMismatchError(
                f"anchor set mismatch: the index was built on anchors {self.anchors['hash'][:12]}… "
                f"({self.anchors['count']} anchors), the query side uses {anchor_hash[:12]}…"
            )


def hash_arrays(*parts: Any) -> str:
    """A stable sha256 over strings, bytes and arrays, used for the anchor-set and data fingerprints."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (bytes, bytearray)):
            h.update(part)
        else:
            h.update(str(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``out_dir`` only if the block succeeds.

    A failed build leaves any previous index untouched; a successful one swaps in with renames on
    the same filesystem, so readers see either the old directory or the new one.
    """
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        for f in tmp.iterdir():  # make new file contents durable before the rename publishes them
            if f.is_file() and f.stat().st_nlink == 1:  # hard links share an already published inode
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link_tree(src: str | Path, dst: str | Path, skip: set[str] = frozenset()) -> None:
    """Hard-link (or copy, across filesystems) every file of ``src`` into ``dst`` except ``skip``.

    Index files are never modified in place, so sharing their inodes between the old and the new
    directory is safe and costs no copy of the vectors.
    """
    for f in Path(src).iterdir():
        if f.name in skip or not f.is_file():
            continue
        try:
            os.link(f, Path(dst) / f.name)
        except OSError:
            shutil.copy2(f, Path(dst) / f.name)
