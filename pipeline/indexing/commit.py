"""The one merge step: FAISS indexes from shards and merged item tables, written into a staging directory.

A build, an ``add`` and a ``remove`` all write their directory here (:func:`write_index`), and publish it
through the one transaction, :func:`pipeline.store.publish.commit`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..ann.auto import IndexBudget, choose_index, describe_params
from ..ann.faiss_index import build_faiss, sample_rows, write_faiss
from ..config import IndexConfig
from ..core.spaces import MODALITIES
from ..store.files import link_tree
from ..store.layout import SHARDS, index_file, items_file
from ..store.manifest import Manifest
from ..store.publish import Build, commit
from ..store.shards import Shard, normalise_items
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
        params = describe_params(records[m].get("params") or {})
        logger.info("auto chose %s%s for the %s index", records[m]["key"], params, m)
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
) -> Manifest:
    """Publish a built index at ``out`` (:class:`~pipeline.store.publish.Build`: it replaces whatever is there)."""
    return commit(out, Build(), read_at=None,
                  write=lambda tmp, _: write_index(tmp, shards, indexes, manifest, languages, write_extra))


def write_index(
    tmp: Path,
    shards: Sequence[Shard],
    indexes: dict[str, Any],
    manifest: Manifest,
    languages: Sequence[str],
    write_extra: Callable[[Path], None],
) -> Manifest:
    """Write an index's files into the staging directory ``tmp``: shards (hard-linked), indexes, item tables.

    ``write_extra(tmp)`` adds the files the caller owns (anchors, projectors, config, ...). The manifest's
    counts are filled in here, from what is actually written; :func:`~pipeline.store.publish.commit` writes it.
    """
    import pyarrow.compute as pc

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
    logger.info("wrote index files for %s: %d images, %d captions in %d shards", tmp.name, indexes["image"].ntotal,
                indexes["text"].ntotal, len(shards))
    return manifest


def _merge_items(shards: Sequence[Shard], modality: str, path: Path) -> Any:
    """The shards' item rows of one modality, in FAISS id order, as one parquet file; returns the table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # normalised again on read: shards written before the one item schema may hold large_string columns
    table = pa.concat_tables([normalise_items(s.items(modality), modality) for s in shards],
                             promote_options="default")
    pq.write_table(table, path)
    return table
