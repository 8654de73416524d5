"""Incremental updates: add items to an index or remove them, without re-embedding what it already holds.

New items run through the same dataflow as a build (:mod:`.stream`) with the index's own encoders and
fitted projectors, so an added item gets exactly the vectors a build would have given it. Removal rewrites
only the shards that hold removed items, and the index builder compacts. Both end in the same
transaction as a build (:func:`pipeline.store.publish.commit`): under the writers' lock, and only over the
version the update was prepared against, so concurrent updates never lose one another.
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from ..ann.faiss_index import read_faiss
from ..config import Config
from ..core.io import read_parquet
from ..core.spaces import MODALITIES, SpaceKey
from ..data import load_data
from ..encoders import Encoder
from ..store.files import link_tree
from ..store.layout import MANIFEST, SHARDS, index_file, items_file, staging_dir
from ..store.manifest import Manifest
from ..store.publish import Add, Remove, commit
from ..store.shards import Shard, ShardPayload, open_shards, write_shard
from .commit import blocks, refill, write_index
from .engines import Engine
from .stream import Projection

logger = logging.getLogger(__name__)


def update_index(
    index_dir: Path,
    manifest: Manifest,
    *,
    add: Any = None,
    projection: Projection | None = None,
    remove: Collection[str] = (),
    upsert: bool = False,
    shard_size: int = 10_000,
    engine: Engine,
) -> Manifest:
    """Add the items of dataset ``add`` (projected by ``projection``) and remove the ids ``remove``, atomically.

    ``engine`` embeds the new shards and fills the indexes.

    Raises:
        ValueError: an added id is already in the index (without ``upsert``), or is given twice; a removed
            id is not in the index; both added and removed ids are given. Nothing is written then.
        ConflictError: the index was published since ``manifest`` was read (its generation differs).
    """
    new_ids = list(add["id"]) if add is not None else []
    if new_ids and remove:
        raise ValueError("an update adds items or removes them, not both: remove first, then add (or upsert)")
    # Checked against the version on disk now, outside the lock: commit publishes only if that is still the
    # version ``manifest`` was read at, so a check made on a newer one is never acted upon.
    stored = set(read_parquet(index_dir / items_file("image"), "image item table").column("id").to_pylist())
    removing = set(remove)
    unknown = sorted(removing - stored)
    if unknown:
        raise ValueError(f"cannot remove {unknown[0]!r}: no item with that id in {index_dir}"
                         + (f" ({len(unknown) - 1} more unknown ids)" if len(unknown) > 1 else ""))
    if len(removing) == len(stored) and not new_ids:
        raise ValueError(f"cannot remove every item of {index_dir}: an index needs at least one")
    present = [i for i in new_ids if i in stored]
    if present and not upsert:
        _refuse_present(index_dir, present)
    removing |= set(present)
    op = Add(added=len(new_ids), upserted=len(present)) if new_ids else Remove(removed=len(removing))

    def write(tmp: Path, current: Manifest | None) -> Manifest:
        # Under the writers' lock (the staging area is the index's one), on the version ``manifest`` was read at.
        assert current is not None, "commit restores an index before an update runs"
        shards = open_shards(index_dir)
        staging = staging_dir(index_dir)
        try:
            kept = [s for s in (_without(s, removing, staging) for s in shards) if s is not None]
            added: list[Shard] = []
            if add is not None and len(add):
                assert projection is not None, "adding items needs the index's projection"
                first = int(shards[-1].path.name) + 1 if shards else 0
                added = engine.write_shards(add, staging, projection, shard_size=shard_size, first=first)
            # read into memory: a memory-mapped index is read-only
            indexes = {m: read_faiss(index_dir / index_file(m), mmap=False) for m in MODALITIES}
            for m, index in indexes.items():
                if removing:  # compaction: the trained index refilled from the kept shards, ids renumbered in order
                    refill(index, [*kept, *added], m, engine)
                else:
                    engine.add(index, blocks(added, m), desc=f"FAISS add ({m})")
            languages = [s.lang for s in current.spaces if s.lang]
            skip = {SHARDS, MANIFEST, *(index_file(m) for m in MODALITIES), *(items_file(m) for m in MODALITIES)}
            return write_index(tmp, [*kept, *added], indexes, copy.deepcopy(current), languages,
                               lambda t: link_tree(index_dir, t, skip=skip))
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # its shards are hard-linked into ``tmp`` by now

    new = commit(index_dir, op, read_at=manifest.generation, write=write)
    logger.info("updated %s: %d added, %d removed (%d replaced)", index_dir, len(new_ids), len(removing),
                len(present))
    return new


def add_data(
    index_dir: Path,
    manifest: Manifest,
    cfg: Config,
    projectors: dict[SpaceKey, Any],
    encoder: Callable[[SpaceKey], Encoder],
    *,
    upsert: bool = False,
    engine: Engine,
) -> Manifest:
    """Add the items named by ``cfg.data``, embedded by the index's encoders and projected by its projectors.

    The rest of ``cfg`` does not apply: the index decides encoders, anchors, projector and layout. A warning
    lists the sections of ``cfg`` that differ from the index's, so that a user who meant them knows.
    """
    built = manifest.config
    # an add config's anchors section is never used (the index's anchors are), so it is not compared
    differ = [k for k in ("text_encoder", "text_encoders", "image_encoder", "projector", "index")
              if built is not None and getattr(cfg, k) != getattr(built, k)]
    if differ:
        logger.warning("adding to %s: only the config's data section is used; its %s differ from the index's "
                       "and are ignored", index_dir, ", ".join(differ))
    languages = cfg.data.languages  # the new items' captions; an index language they lack is a gap
    known = [s.lang for s in projectors if s.lang]
    unknown = [lang for lang in languages if lang not in known]
    if unknown:
        raise ValueError(f"the new items' data.languages {unknown} are not languages of {index_dir}, which has "
                         f"anchor captions in {known} only")
    ds = load_data(cfg.data)
    if not upsert:  # refused before any encoder loads; update_index checks again under the lock
        stored = set(read_parquet(index_dir / items_file("image"), "image item table").column("id").to_pylist())
        present = [i for i in ds["id"] if i in stored]
        if present:
            _refuse_present(index_dir, present)
    # The index's own projectors, never refitted: an added item gets the vectors a build would have given it.
    layout = built if built is not None else Config()  # an index that recorded no config was built by defaults
    projection = Projection.of(cfg, {s: encoder(s) for s in projectors}, projectors, manifest.anchors.hash,
                               built=layout)
    return update_index(index_dir, manifest, add=ds, projection=projection, upsert=upsert,
                        shard_size=layout.shard_size, engine=engine)


def _refuse_present(index_dir: Path, present: list[str]) -> None:
    """Refuse adding ids the index holds already, naming the first."""
    raise ValueError(f"item {present[0]!r} is already in {index_dir}; ids must stay unique: remove it "
                     f"first or pass --upsert (upsert=True) to replace it"
                     + (f" ({len(present) - 1} more)" if len(present) > 1 else ""))


def _without(shard: Shard, remove: set[str], staging: Path) -> Shard | None:
    """``shard`` as it is if it holds none of ``remove``, else a copy without them (None if nothing is left)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not remove:
        return shard
    drop = pa.array(sorted(remove), pa.string())
    items = {m: shard.items(m) for m in MODALITIES}
    masks = {m: ~pc.is_in(items[m].column("id"), value_set=drop).to_numpy(zero_copy_only=False) for m in MODALITIES}
    if all(mask.all() for mask in masks.values()):
        return shard
    if not masks["image"].any():
        return None
    thumbs = shard.thumbnails()
    payload = ShardPayload(
        vectors={m: np.asarray(shard.vectors(m)[masks[m]]) for m in MODALITIES},
        items={m: items[m].filter(pa.array(masks[m])) for m in MODALITIES},
        thumbnails=None if thumbs is None else thumbs.filter(pc.invert(pc.is_in(thumbs.column("id"), value_set=drop))),
    )
    return write_shard(staging, int(shard.path.name), payload, rows=tuple(shard.rows), source=shard.source,
                       anchors=shard.anchors)
