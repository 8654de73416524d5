"""File names inside an index directory, in one place so that writers and readers cannot drift apart."""

from __future__ import annotations

PROJECTORS = "projector.safetensors"  # anchor embeddings and statistics per space
ANCHORS = "anchors.parquet"  # the parallel anchor set: ids, images, captions per language
THUMBNAILS = "thumbnails.parquet"  # id -> PNG thumbnail, for the web page (one per shard)
SHARDS = "shards"  # the relative vectors and item rows, block by block: what the FAISS indexes are built from
CONFIG = "config.yaml"  # the config that built the index
SKIPPED = "skipped.parquet"  # rows of the data left out of the build (data.on_error: skip), with the reason


def index_file(modality: str) -> str:
    """The FAISS index of one modality's relative vectors."""
    return f"{modality}.faiss"


def items_file(modality: str) -> str:
    """Metadata rows aligned with the FAISS ids of one modality."""
    return f"{modality}_items.parquet"

