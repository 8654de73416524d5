"""A damaged shard.json is named, whichever reader meets it first (the item tables, or the index builder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.ann.faiss_index import IndexCorruptError
from pipeline.store.shards import SHARD_META, ShardError, list_shards, read_meta, read_shard


@pytest.mark.parametrize("text", ["{}", "[]", '{"rows": [0, 1], "source": "s", "anchors": "a", "counts": {}}', "{"],
                         ids=["empty-object", "array", "no-counts", "not-json"])
def test_damaged_shard_meta_names_the_file(small_index: Path, tmp_path: Path, text: str) -> None:
    from pipeline import Retriever

    index = tmp_path / "idx"
    shutil.copytree(small_index, index)
    shard = list_shards(index / "shards")[0]
    (shard / SHARD_META).write_text(text)
    for read in (read_meta, read_shard):
        with pytest.raises(ShardError, match=f"{shard / SHARD_META} is damaged .*; rebuild the index"):
            read(shard)
    # was KeyError: 'counts' on the first thumbnail; now the load refuses it, by the size the manifest records
    with pytest.raises(IndexCorruptError, match=rf"shards/{shard.name}/{SHARD_META}: \d+ bytes, but \d+ were"):
        Retriever.load(index)


def test_files_of_an_index_share_one_mode(small_index: Path) -> None:
    """projector.safetensors was written 0600 (safetensors' save_file) while the other files were 0644."""
    modes = {p.name: p.stat().st_mode & 0o777 for p in small_index.iterdir() if p.is_file()}
    assert "projector.safetensors" in modes and len(set(modes.values())) == 1, modes


def test_projector_file_follows_the_umask(small_retriever, tmp_path: Path) -> None:
    import os

    from pipeline.space.projectors import save_projectors

    old = os.umask(0o027)
    try:
        save_projectors(tmp_path / "p.safetensors", small_retriever.projectors)
    finally:
        os.umask(old)
    assert (tmp_path / "p.safetensors").stat().st_mode & 0o777 == 0o640
