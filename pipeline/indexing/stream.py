"""The streaming dataflow: items become relative vectors block by block, each block written as a shard.

Builds and ``add`` share it; an engine (:mod:`pipeline.indexing.engines`) schedules its shard tasks. Memory is
bounded by the anchors, one block and its vectors; a shard that is already complete (same rows, source and
anchors) is kept, so a killed build resumes where it stopped.
"""

from __future__ import annotations

import io
import logging
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..core.progress import stage
from ..core.spaces import IMAGE, SpaceKey
from ..data import cache_dir, caption_rows, captions
from ..data.fingerprint import dataset_key
from ..data.images import load_image
from ..encoders import Encoder
from ..encoders.embed import embed_dataset
from ..space.projectors import Projector
from ..store.layout import shard_name
from ..store.shards import Shard, ShardError, ShardPayload, read_shard, write_shard

logger = logging.getLogger(__name__)

# Columns that say how an item is stored rather than what it is: not copied into hit metadata.
STORAGE_COLUMNS = ("image", "captions")


@dataclass
class Projection:
    """Everything that turns items into relative vectors: encoders, fitted projectors and how to run them."""

    encoders: Mapping[SpaceKey, Encoder]  # by space: IMAGE, TEXT, and text:<lang> for per-language encoders
    projectors: Mapping[SpaceKey, Projector]
    languages: Sequence[str]  # caption languages, in the order their rows are stored
    anchors: str  # hash of the anchor set the projectors were fitted on
    batch_size: int = 64
    thumbnails: int = 0  # side of the PNG thumbnails stored with each shard; 0 stores none
    cache: Path | None = None  # absolute-embedding cache (see embed.embed_dataset)

    @classmethod
    def of(
        cls, cfg: Config, encoders: Mapping[SpaceKey, Encoder], projectors: Mapping[SpaceKey, Projector], anchors: str,
        *, built: Config | None = None,
    ) -> Projection:
        """The projection of ``cfg.data``'s items onto an index's anchors, for a build and for ``add`` alike.

        ``cfg`` says which items (their languages, cache) and how to run the encoders; ``built`` is the config
        the index was built with (default: ``cfg``, a build), which decides how an item is stored, so that an
        added item is stored as a built one.
        """
        built = built or cfg
        return cls(encoders, projectors, cfg.data.languages, anchors, cfg.batch_size, built.index.thumbnails,
                   cache_dir(cfg.data) / "embeddings")

    def encoder(self, space: SpaceKey) -> Encoder:
        return encoder_for(self.encoders, space)

    def block(self, ds: Any, *, show_progress: bool | None = None, bar: Any = None) -> ShardPayload:
        """Embed and project the items of ``ds``: one image row per item, one text row per caption.

        ``bar``, an overall bar counting items, moves by each encoded batch's share of these items
        (:func:`stage_shares`), so its ETA holds across the image pass and the caption passes.
        """
        import pyarrow as pa

        ids = np.asarray(ds["id"], dtype=object)
        caption_sets = {lang: caption_rows(captions(ds, lang)) for lang in self.languages}
        shares = stage_shares(len(ds), {lang: len(rows) for lang, (rows, _) in caption_sets.items()})
        with stage(str(IMAGE), bar=bar, rows=len(ds), items=shares[IMAGE]):
            x = embed_dataset(ds, self.encoders[IMAGE], batch_size=self.batch_size, cache=self.cache,
                              show_progress=show_progress)
        text_vecs, table = [], {"id": [], "lang": [], "caption": []}
        for lang, (rows, texts) in caption_sets.items():
            space = SpaceKey.text(lang)
            with stage(str(space), bar=bar, rows=len(rows), items=shares[space]):
                vecs = embed_dataset(ds, self.encoder(space), lang=lang, batch_size=self.batch_size,
                                     cache=self.cache, show_progress=show_progress)
            text_vecs.append(self.projectors[space].transform(vecs))
            table["id"] += ids[rows].tolist()
            table["lang"] += [lang] * len(texts)
            table["caption"] += texts
        dim = self.projectors[IMAGE].total
        meta = ds.remove_columns([c for c in STORAGE_COLUMNS if c in ds.column_names])
        return ShardPayload(
            vectors={"image": self.projectors[IMAGE].transform(x),
                     "text": np.vstack(text_vecs) if text_vecs else np.zeros((0, dim), np.float32)},
            items={"image": meta.with_format("arrow")[:],
                   "text": pa.table({k: pa.array(v, pa.string()) for k, v in table.items()})},
            thumbnails=thumbnail_table(ds, self.thumbnails) if self.thumbnails else None,
        )


# What one image costs to encode, in captions: the demo's EfficientNet-Lite0 took about 63 ms an image and MiniLM
# about 3 ms a caption on 2 cores (README, Quick start: ~2 min for 1,914 images, under 1 min for ~17,000
# captions). Only an overall bar's ETA depends on it.
IMAGE_COST = 20.0


def stage_shares(items: int, caption_rows: Mapping[str, int]) -> dict[SpaceKey, int]:
    """How many of a block's ``items`` each encoding pass is worth on an overall bar, by its estimated cost;
    whole numbers that add up to ``items``, so the bar counts whole items."""
    costs = {IMAGE: IMAGE_COST * items, **{SpaceKey.text(lang): float(n) for lang, n in caption_rows.items()}}
    total, cumulative, given, shares = sum(costs.values()) or 1.0, 0.0, 0, {}
    for space, cost in costs.items():
        cumulative += cost
        shares[space] = round(items * cumulative / total) - given
        given += shares[space]
    return shares


def encoder_for(encoders: Mapping[SpaceKey, Encoder], space: SpaceKey) -> Encoder:
    """The encoder of a space: its own if it has one, else its modality's shared encoder."""
    return encoders.get(space) or encoders[space.shared]


_SOURCE_KEYS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def source_fingerprint(ds: Any) -> str:
    """What identifies the source rows: the content of every column a shard stores (ids, images, captions,
    metadata), so a shard made from other rows is never kept. Computed once per dataset object."""
    key = _SOURCE_KEYS.get(ds)
    if key is None:
        key = _SOURCE_KEYS[ds] = dataset_key(ds)
    return key


@dataclass(frozen=True)
class ShardTask:
    """One shard to make: its number and the source rows ``[start, stop)`` it holds."""

    number: int
    rows: tuple[int, int]
    place: tuple[int, int] = (0, 0)  # (its place, of how many) among the shards of this write, kept ones counted


@dataclass
class ShardPlan:
    """The shards of a dataset: those complete on disk (kept), the tasks left to make, and the source's id."""

    source: str  # fingerprint of the source rows (see source_fingerprint)
    kept: list[Shard]
    tasks: list[ShardTask]


def plan_shards(ds: Any, root: Path, projection: Projection, *, shard_size: int, first: int = 0) -> ShardPlan:
    """Split ``ds`` into shards ``first, first+1, ...`` under ``root`` and say which are already complete.

    A shard on disk is kept only if its files match its record and it was made from the same rows of the
    same source on the same anchors; anything else is to be made again, with a warning that says why.
    """
    source, n = source_fingerprint(ds), len(ds)
    count = max(1, math.ceil(n / shard_size))
    root.mkdir(parents=True, exist_ok=True)
    plan = ShardPlan(source, [], [])
    for s in range(count):
        task = ShardTask(first + s, (s * shard_size, min(n, (s + 1) * shard_size)), (s + 1, count))
        path = root / shard_name(task.number)
        if path.exists():
            try:
                plan.kept.append(read_shard(path, source=source, anchors=projection.anchors, rows=task.rows))
                continue
            except ShardError as e:
                logger.warning("%s; rebuilding it", e)
        plan.tasks.append(task)
    if plan.kept:
        logger.info("%d of %d shards complete and kept; %d to make", len(plan.kept), count, len(plan.tasks))
    return plan


def project_shard(ds: Any, root: Path, projection: Projection, task: ShardTask, source: str,
                  *, show_progress: bool | None = False, bar: Any = None) -> Shard:
    """Embed, project and write one shard: the unit of work of every engine (``bar``: see Projection.block)."""
    payload = projection.block(ds.select(range(*task.rows)), show_progress=show_progress, bar=bar)
    return write_shard(root, task.number, payload, rows=task.rows, source=source, anchors=projection.anchors)


def log_shard(task: ShardTask, items: int, seconds: float, done: int, total: int, elapsed: float) -> None:
    """The per-shard progress line: its place in the whole write (a resumed build's shard 4 of 5 stays "4/5"),
    items, throughput so far, and the time left at that rate."""
    rate = done / max(elapsed, 1e-9)
    logger.info("shard %d/%d: %d items in %.1f s (%.1f items/s), ETA %s", *task.place, items, seconds, rate,
                _duration((total - done) / rate))


def thumbnail_table(ds: Any, side: int) -> Any:
    """PNG thumbnails of the items' images (id, png), for the web page."""
    import pyarrow as pa

    ids, pngs = [], []
    for item_id, image in zip(ds["id"], ds["image"]):
        img = load_image(image, item=item_id)
        img.thumbnail((side, side))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        ids.append(item_id)
        pngs.append(buf.getvalue())
    return pa.table({"id": pa.array(ids, pa.string()), "png": pa.array(pngs, pa.binary())})


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
