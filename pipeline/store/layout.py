"""The names of an index on disk, in one place so that writers and readers cannot drift apart.

Inside an index directory: the files below. Beside it (siblings, hidden, on the same filesystem so that a
rename publishes): the partial build, the update staging area, the writers' lock and the temporary
directories of an atomic swap.
"""

from __future__ import annotations

import re
from pathlib import Path

# -- inside an index directory ------------------------------------------------------------------------------
MANIFEST = "manifest.json"  # what the index is: encoders, anchors, projector, FAISS, counts, generation
PROJECTORS = "projector.safetensors"  # anchor embeddings and statistics per space
ANCHORS = "anchors.parquet"  # the parallel anchor set: ids, images, captions per language
THUMBNAILS = "thumbnails.parquet"  # id -> PNG thumbnail, for the web page (one per shard)
SHARDS = "shards"  # the relative vectors and item rows, block by block: what the FAISS indexes are built from
CONFIG = "config.yaml"  # the config that built the index
SKIPPED = "skipped.parquet"  # rows of the data left out of the build (data.on_error: skip), with the reason

# -- inside a shard directory (under SHARDS/) --------------------------------------------------------------
SHARD_META = "shard.json"  # the shard's record: rows, source, anchors, counts, every file's size and sha256
SHARD_NAME = re.compile(r"^\d{6}$")  # a complete shard's directory name; anything else is temporary

# -- inside a partial build (see partial_dir) ---------------------------------------------------------------
BUILD_STATE = "state.json"  # the build key the partial shards were made with


def index_file(modality: str) -> str:
    """The FAISS index of one modality's relative vectors."""
    return f"{modality}.faiss"


def items_file(modality: str) -> str:
    """Metadata rows aligned with the FAISS ids of one modality."""
    return f"{modality}_items.parquet"


def vectors_file(modality: str) -> str:
    """A shard's relative vectors of one modality (``.npy``, memory-mapped on read)."""
    return f"{modality}.npy"


def shard_name(number: int) -> str:
    """The directory of shard ``number``: zero-padded, so names sort in shard order."""
    return f"{number:06d}"


def shard_temp(number: int, pid: int) -> str:
    """Where process ``pid`` writes shard ``number`` before renaming it into place (not a SHARD_NAME)."""
    return f".{shard_name(number)}.tmp-{pid}"


# -- siblings of an index directory -------------------------------------------------------------------------


def partial_dir(out: Path) -> Path:
    """Where a build of ``out`` keeps its finished shards until it publishes them (and resumes from them)."""
    return out.parent / f".{out.name}.partial"


def staging_dir(index_dir: Path) -> Path:
    """Where an add or remove writes its new shards before publishing them."""
    return index_dir.parent / f".{index_dir.name}.update"


def lock_file(index_dir: Path) -> Path:
    """The writers' lock of ``index_dir``: beside it, so that it survives the directory's swaps."""
    return index_dir.parent / f".{index_dir.name}.lock"


def swap_prefix(index_dir: Path, role: str) -> str:
    """Name prefix of a swap's temporary sibling: ``role`` "tmp" (the new version, and after an exchange the
    replaced one) or "old" (the replaced one, in the rename fallback)."""
    return f".{index_dir.name}.{role}-"


def is_leftover(index_dir: Path, name: str) -> bool:
    """Whether sibling ``name`` is a publish's temporary of ``index_dir``: a swap directory (``swap_prefix`` and
    mkdtemp's 8 characters, so that the leftovers of an index named ``x.tmp-1`` are not taken for ``x``'s) or
    the update staging area. Never the partial build (a resumed build needs it) nor the lock."""
    swap = re.fullmatch(rf"\.{re.escape(index_dir.name)}\.(tmp|old)-[a-z0-9_]{{8}}", name)
    return swap is not None or name == staging_dir(index_dir).name
