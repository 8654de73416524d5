"""Index building: choose and embed the anchors, stream the data through them into shards, and publish."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..core.hashing import hash_arrays
from ..core.spaces import IMAGE, MODALITIES, SpaceKey
from ..data import BadRow, cache_dir, caption_rows, captions, load_data
from ..encoders import Encoder, check_spec, make_encoder
from ..encoders.embed import embed_dataset, pool_captions
from ..space.anchors import SELECTORS, AnchorSet, check_anchor_count, select_anchors, selection_features
from ..space.projectors import Projector, load_projectors, make_projector, save_projectors
from ..store.layout import ANCHORS, CONFIG, PROJECTORS, SHARDS, SKIPPED
from ..store.manifest import Manifest
from ..store.records import AnchorRecord, AutoChoice, Counts, FaissRecord, read_record
from ..version import __version__
from .commit import build_indexes, publish
from .engines import Engine
from .stream import Projection, encoder_for, source_fingerprint, write_shards

logger = logging.getLogger(__name__)

@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Log how long a build stage took."""
    t0 = time.perf_counter()
    yield
    logger.info("%s took %.1f s", stage, time.perf_counter() - t0)


def load_encoders(cfg: Config, device: str | None) -> dict[SpaceKey, Encoder]:
    """Encoders by manifest key: one per modality, plus ``text:<lang>`` for per-language overrides."""
    encoders = {SpaceKey(m): make_encoder(cfg, m, device=device) for m in MODALITIES}
    for lang, spec in cfg.text_encoders.items():
        encoders[SpaceKey.text(lang)] = make_encoder(cfg, "text", spec, device)
    return encoders


def check_config(cfg: Config) -> None:
    """What can be refused from the config alone is refused before any data is read or model loaded."""
    for modality, spec in (("text", cfg.text_encoder), ("image", cfg.image_encoder),
                           *(("text", spec) for spec in cfg.text_encoders.values())):
        check_spec(spec, modality)
    for lang in cfg.text_encoders:
        if lang not in cfg.data.languages:
            raise ValueError(f"text_encoders names language {lang!r}, which is not in data.languages "
                             f"{cfg.data.languages}")
    if not cfg.anchors.path:
        SELECTORS.get(cfg.anchors.strategy)


def build_index(
    cfg: Config, out: Path, *, device: str | None = None, resume: bool | None = None, engine: Engine | None = None
) -> dict[SpaceKey, Encoder]:
    """Write a complete index for ``cfg`` to ``out``, shard by shard; returns the encoders for reuse.

    Shards go to ``.<name>.partial/`` beside ``out`` as they finish. A build that stops resumes from them
    when run again (``resume=None``, the default); ``resume=True`` insists on it and ``False`` starts over.
    ``engine`` runs the shards and the FAISS adds (default: this process; see :mod:`pipeline.indexing.engines`).
    """
    check_config(cfg)
    if cfg.shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {cfg.shard_size}")
    skipped: list[BadRow] = []
    with timed("loading data"):
        ds = load_data(cfg.data, skipped=skipped)
    if not cfg.anchors.path:
        check_anchor_count(cfg.anchors.count, len(ds))  # before any model loads or item is embedded
    encoders = load_encoders(cfg, device)
    work = _work_dir(Path(out), _build_key(cfg, encoders, ds), resume)
    with timed("anchors"):
        anchors, projectors = _anchors_and_projectors(cfg, ds, encoders, work)
    projection = Projection(encoders, projectors, cfg.data.languages, anchors.hash, cfg.batch_size,
                            cfg.index.thumbnails, cache_dir(cfg.data) / "embeddings")
    with timed("embedding and projecting"):
        shards = write_shards(ds, work / SHARDS, projection, shard_size=cfg.shard_size, engine=engine)
    with timed("building FAISS"):
        indexes, chosen = build_indexes(shards, cfg.index, cfg.anchors.seed, add=engine.add if engine else None)
    infos = {key: e.info for key, e in encoders.items()}
    manifest = Manifest(
        encoders=infos,
        stored_by=dict(infos),
        anchors=AnchorRecord(hash=anchors.hash, count=len(anchors), strategy=cfg.anchors.strategy,
                             spaces=list(projectors), caption_pooling=cfg.anchors.caption_pooling,
                             per_language={s.lang: p.present for s, p in projectors.items() if s.lang}),
        projector=copy.deepcopy(cfg.projector),
        faiss=FaissRecord(factory=cfg.index.factory,
                          auto={m: read_record(AutoChoice, rec, "the auto index choice", f"{m}.")
                                for m, rec in chosen.items()}),
        counts=Counts(skipped=len(skipped)),
        package_version=__version__,
        config=copy.deepcopy(cfg),
    )

    def write_extra(tmp: Path) -> None:
        save_projectors(tmp / PROJECTORS, projectors)
        anchors.save(tmp / ANCHORS)
        _write_skipped(skipped, tmp / SKIPPED)
        cfg.save(tmp / CONFIG)

    with timed("writing"):
        publish(Path(out), shards, indexes, manifest, cfg.data.languages, write_extra)
    shutil.rmtree(work, ignore_errors=True)
    return encoders


def partial_dir(out: Path) -> Path:
    """Where a build of ``out`` keeps its finished shards until it publishes them."""
    return out.parent / f".{out.name}.partial"


def _build_key(cfg: Config, encoders: dict[SpaceKey, Encoder], ds: Any) -> str:
    """Everything that decides a shard's contents: a partial build made with another key is not resumed."""
    anchor_file = AnchorSet.load(cfg.anchors.path).hash if cfg.anchors.path else None
    parts = {"data": asdict(cfg.data), "source": source_fingerprint(ds), "n": len(ds), "anchors": asdict(cfg.anchors),
             "anchor_file": anchor_file, "projector": asdict(cfg.projector), "shard_size": cfg.shard_size,
             "thumbnails": cfg.index.thumbnails, "encoders": {str(k): e.info.to_dict() for k, e in encoders.items()}}
    return hash_arrays(json.dumps(parts, sort_keys=True, default=str))


def _work_dir(out: Path, key: str, resume: bool | None) -> Path:
    """The partial-build directory for ``key``: kept to resume, or cleared, as ``resume`` says."""
    work = partial_dir(out)
    state = work / "state.json"
    found = json.loads(state.read_text()).get("key") if state.is_file() else None
    if resume is True and found != key:
        why = "none exists" if found is None else "it was made with another config, data or encoders"
        raise ValueError(f"nothing to resume for {out}: {why} ({work}); run the build without --resume")
    if found == key and resume is not False:
        logger.info("resuming the build of %s from %s", out, work)
        return work
    if work.exists():
        logger.warning("discarding the partial build in %s (%s)", work,
                       "--fresh" if resume is False else "made with another config, data or encoders")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _write_atomic(state, json.dumps({"key": key}).encode())
    return work


def _anchors_and_projectors(
    cfg: Config, ds: Any, encoders: dict[SpaceKey, Encoder], work: Path
) -> tuple[AnchorSet, dict[SpaceKey, Projector]]:
    """The anchor set and fitted projectors, from the partial build if it has them, else chosen and fitted."""
    spaces = [IMAGE, *(SpaceKey.text(lang) for lang in cfg.data.languages)]
    if (work / PROJECTORS).is_file() and (work / ANCHORS).is_file():
        return AnchorSet.load(work / ANCHORS), load_projectors(work / PROJECTORS, spaces, cfg.projector)
    anchors = _anchor_set(cfg, ds, encoders)
    projectors = fit_projectors(anchors, encoders, cfg.projector, cfg.data.languages, cfg.anchors.caption_pooling,
                                cfg.batch_size)
    anchors.save(work / f"{ANCHORS}.tmp")
    save_projectors(work / f"{PROJECTORS}.tmp", projectors)
    (work / f"{ANCHORS}.tmp").replace(work / ANCHORS)
    (work / f"{PROJECTORS}.tmp").replace(work / PROJECTORS)  # written last: its presence means both are whole
    return anchors, projectors


def _anchor_set(cfg: Config, ds: Any, encoders: dict[SpaceKey, Encoder]) -> AnchorSet:
    """The configured anchor file, or anchors chosen from the data (geometry-aware selectors look at a pool)."""
    languages = cfg.data.languages
    if cfg.anchors.path:
        anchors = AnchorSet.load(cfg.anchors.path)
        missing = [lang for lang in languages if lang not in anchors.captions]
        if missing:
            raise ValueError(f"anchor file {cfg.anchors.path} has no captions in {missing}")
        return anchors
    n, pool_size = len(ds), cfg.anchors.pool
    pool = np.arange(n) if pool_size is None or pool_size >= n else np.sort(
        np.random.default_rng(cfg.anchors.seed).choice(n, max(pool_size, cfg.anchors.count), replace=False))

    def spaces() -> tuple[np.ndarray, np.ndarray]:  # the candidates' image vectors and pooled primary captions
        sub = ds if len(pool) == n else ds.select(pool.tolist())
        primary = languages[0]
        x_image = embed_dataset(sub, encoders[IMAGE], batch_size=cfg.batch_size)
        x_text = embed_dataset(sub, encoder_for(encoders, SpaceKey.text(primary)), lang=primary,
                               batch_size=cfg.batch_size)
        rows, _ = caption_rows(captions(sub, primary))
        return x_image, pool_captions(x_text, rows, range(len(sub)), cfg.anchors.caption_pooling)[0]

    idx = select_anchors(len(pool), cfg.anchors.count, strategy=cfg.anchors.strategy, seed=cfg.anchors.seed,
                         features=lambda: selection_features(*spaces()), spaces=spaces)
    return AnchorSet.from_dataset(ds, pool[idx], languages)


def fit_projectors(
    anchors: AnchorSet,
    encoders: dict[SpaceKey, Encoder],
    options: Any,
    languages: list[str],
    pooling: str = "mean",
    batch_size: int = 64,
) -> dict[SpaceKey, Projector]:
    """One projector per space, fitted on the anchors embedded by that space's encoder.

    An anchor without a caption in a language is absent from that language's projector (its position is
    missing); a language needs at least two anchors with captions.
    """
    a_image = encoders[IMAGE].encode(anchors.images, batch_size=batch_size, ids=anchors.ids)
    projectors = {IMAGE: make_projector(options, encoders[IMAGE].blocks).fit(a_image)}
    for lang in languages:
        encoder = encoder_for(encoders, SpaceKey.text(lang))
        vecs, pos = anchors.text_vectors(encoder, lang, pooling, batch_size)
        if len(pos) < 2:
            raise ValueError(f"only {len(pos)} of {len(anchors)} anchors have a caption in {lang!r}; a language "
                             f"needs at least 2 (drop it from data.languages or choose other anchors)")
        if len(pos) < len(anchors):
            logger.warning("%d of %d anchors have no caption in %r: that language's projector uses the other %d",
                           len(anchors) - len(pos), len(anchors), lang, len(pos))
        projectors[SpaceKey.text(lang)] = make_projector(options, encoder.blocks).fit(vecs, positions=pos,
                                                                                   total=len(anchors))
    return projectors


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _write_skipped(skipped: list[BadRow], path: Path) -> None:
    """Which rows the build left out and why: written even when empty, so its absence means an older index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": pa.array([b.id for b in skipped], pa.string()),
                             "reason": pa.array([b.reason for b in skipped], pa.string())}), path)
