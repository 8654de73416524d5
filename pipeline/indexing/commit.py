"""The one merge step: FAISS indexes from shards, merged item tables, and the atomic publish of a directory.

A build, an ``add`` and a ``remove`` all end here, so an index directory is always written the same way:
into a temporary sibling that replaces the old directory only when complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..ann.auto import IndexBudget, choose_index
from ..ann.faiss_index import build_faiss, sample_rows, write_faiss
from ..config import IndexConfig
from ..core.spaces import MODALITIES
from ..store.files import atomic_directory, link_tree
from ..store.layout import MANIFEST, SHARDS, index_file, items_file
from ..store.manifest import Manifest
from ..store.shards import Shard
from ..store.verify import record_files
from .engines import Engine

logger = logging.getLogger(__name__)


def blocks(shards: Sequence[Shard], modality: str) -> list[Any]:
    """One modality's vectors, shard by shard, read a slice at a time: the index builder's input."""
    return [s.vectors(modality) for s in shards]


def build_indexes(
    shards: Sequence[Shard], cfg: IndexConfig, seed: int = 0, *, engine: Engine
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A FAISS index per modality from the shards' vectors, trained once on a sample drawn across them.

    ``engine`` fills each trained index with the shards' vectors in order (the local engine in this process;
    the Ray engine adds shards on its workers and merges them).

    With ``factory: auto`` each index is chosen under the budgets and tuned on cross-modal queries: a sample
    of the other modality's vectors (captions searching images, images searching captions), which are out of
    the indexed distribution as real queries are. Returns the indexes and, for auto, each choice's record.
    """
    if cfg.factory != "auto":
        return {m: build_faiss(blocks(shards, m), cfg.factory, cfg.train_size, seed, engine.add)
                for m in MODALITIES}, {}
    indexes, records = {}, {}
    budget = IndexBudget.from_config(cfg)
    for m, other in zip(MODALITIES, reversed(MODALITIES)):
        queries = sample_rows(blocks(shards, other), cfg.tune_queries, seed + 1)
        indexes[m], records[m] = choose_index(blocks(shards, m), queries, budget, train_size=cfg.train_size, seed=seed,
                                              add=engine.add)
        logger.info("auto chose %s for %s: %s", records[m]["key"], m, records[m].get("params"))
    return indexes, records


def refill(index: Any, shards: Sequence[Shard], modality: str, engine: Engine) -> Any:
    """Empty a trained index and add the shards' vectors again: a compaction that keeps its training."""
    index.reset()
    engine.add(index, blocks(shards, modality), desc=f"FAISS re-add ({modality})")
    return index


def publish(
    out: Path,
    shards: Sequence[Shard],
    indexes: dict[str, Any],
    manifest: Manifest,
    languages: Sequence[str],
    write_extra: Callable[[Path], None],
) -> None:
    """Write a complete index directory at ``out`` atomically: shards (hard-linked), indexes, tables, manifest.

    ``write_extra(tmp)`` adds the files the caller owns (anchors, projectors, config, ...). The manifest's
    counts are filled in here, from what is actually written.
    """
    import pyarrow.compute as pc

    with atomic_directory(out) as tmp:
        write_extra(tmp)
        root = tmp / SHARDS
        root.mkdir()
        for shard in shards:
            (root / shard.path.name).mkdir()
            link_tree(shard.path, root / shard.path.name)  # the shard's files are never rewritten: shared inodes
        for m, index in indexes.items():
            write_faiss(index, tmp / index_file(m))
        tables = {m: _merge_items(shards, m, tmp / items_file(m)) for m in MODALITIES}
        langs = pc.value_counts(tables["text"].column("lang")).to_pylist() if tables["text"].num_rows else []
        per_lang = {d["values"]: d["counts"] for d in langs}
        manifest.counts = replace(
            manifest.counts,
            items=tables["image"].num_rows,
            text=int(indexes["text"].ntotal),
            image=int(indexes["image"].ntotal),
            text_langs={lang: per_lang.get(lang, 0) for lang in languages},
            shards=len(shards),
        )
        for m in MODALITIES:
            if tables[m].num_rows != indexes[m].ntotal:
                raise RuntimeError(f"{m}: {indexes[m].ntotal} vectors but {tables[m].num_rows} item rows")
        manifest.succeed(out)  # under the caller's lock for updates, so no two publishes take one generation
        record_files(tmp, manifest)  # every file's size and checksum: relspace verify, and each load's size check
        (tmp / MANIFEST).write_text(manifest.to_json())
    logger.info("wrote index %s: %d images, %d captions in %d shards", out, indexes["image"].ntotal,
                indexes["text"].ntotal, len(shards))


def _merge_items(shards: Sequence[Shard], modality: str, path: Path) -> Any:
    """The shards' item rows of one modality, in FAISS id order, as one parquet file; returns the table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([s.items(modality) for s in shards], promote_options="default")
    pq.write_table(table, path)
    return table
