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

from ..config import Config, ProjectorConfig
from ..core.hashing import hash_arrays
from ..core.io import atomic_write
from ..core.spaces import IMAGE, MODALITIES, SpaceKey
from ..data import BadRow, caption_rows, captions, load_data
from ..encoders import Encoder, check_spec, make_encoder
from ..encoders.embed import Pooling, embed_dataset, pool_captions
from ..encoders.reuse import ReusingEncoder, VectorTable
from ..space.anchors import SELECTORS, AnchorSet, check_anchor_count, select_anchors, selection_features
from ..space.fit import check_options, embed_anchors, fit_projectors
from ..space.projectors import Projector, load_projectors, save_projectors
from ..store.layout import ANCHORS, BUILD_STATE, CONFIG, PROJECTORS, SHARDS, SKIPPED, partial_dir
from ..store.manifest import Manifest
from ..store.records import AnchorRecord, AutoChoice, Counts, FaissRecord, read_record
from ..version import __version__
from .commit import build_indexes, publish
from .engines import Engine
from .stream import Projection, encoder_for, source_fingerprint

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
    check_options(cfg.projector)  # the projector settings eval refuses too
    for modality, spec in (("text", cfg.text_encoder), ("image", cfg.image_encoder),
                           *(("text", spec) for spec in cfg.text_encoders.values())):
        check_spec(spec, modality)
    for lang in cfg.text_encoders:
        if lang not in cfg.data.languages:
            raise ValueError(f"text_encoders names language {lang!r}, which is not in data.languages "
                             f"{cfg.data.languages}")
    if cfg.anchors.path:
        _check_anchor_file(cfg)
    else:
        SELECTORS.get(cfg.anchors.strategy)


def _check_anchor_file(cfg: Config) -> None:
    """A configured anchor file must have captions in every language, and with ``projector.anchor_weights`` one
    in the primary language for every anchor (its weights pair each anchor's caption with its image)."""
    anchors = AnchorSet.load(cfg.anchors.path)
    languages = cfg.data.languages
    missing = [lang for lang in languages if lang not in anchors.captions]
    if missing:
        raise ValueError(f"anchor file {cfg.anchors.path} has no captions in {missing}")
    gaps = sum(not caps for caps in anchors.captions[languages[0]])
    if cfg.projector.anchor_weights != "none" and gaps:
        raise ValueError(f"projector.anchor_weights: {cfg.projector.anchor_weights} pairs every anchor's caption "
                         f"in the primary language {languages[0]!r} with its image, but {gaps} of the "
                         f"{len(anchors)} anchors in {cfg.anchors.path} have none; set anchor_weights: none or "
                         "choose anchors that all have one")


def build_index(
    cfg: Config, out: Path, *, engine: Engine, device: str | None = None, resume: bool | None = None
) -> dict[SpaceKey, Encoder]:
    """Write a complete index for ``cfg`` to ``out``, shard by shard; returns the encoders for reuse.

    Shards go to ``.<name>.partial/`` beside ``out`` as they finish. A build that stops resumes from them
    when run again (``resume=None``, the default); ``resume=True`` insists on it and ``False`` starts over.
    ``engine`` runs the shards and the FAISS adds (see :mod:`pipeline.indexing.engines`).
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
    # Each item is embedded once: what the anchor phase embeds (the anchors, a selector's pool) is kept and
    # looked up by the shards, which encode only the rest.
    table = VectorTable()
    reusing: dict[SpaceKey, Encoder] = {key: ReusingEncoder(e, table) for key, e in encoders.items()}
    with timed("anchors"):
        anchors, projectors = _anchors_and_projectors(cfg, ds, reusing, work)
    table.freeze()
    projection = Projection.of(cfg, reusing, projectors, anchors.hash)
    with timed("embedding and projecting"):
        shards = engine.write_shards(ds, work / SHARDS, projection, shard_size=cfg.shard_size)
    del projection, reusing, table  # the anchor phase's vectors: no longer needed
    with timed("building FAISS"):
        indexes, chosen = build_indexes(shards, cfg.index, cfg.anchors.seed, engine=engine)
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
    state = work / BUILD_STATE
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
    with atomic_write(state) as tmp:
        tmp.write_text(json.dumps({"key": key}))
    return work


def _anchors_and_projectors(
    cfg: Config, ds: Any, encoders: dict[SpaceKey, Encoder], work: Path
) -> tuple[AnchorSet, dict[SpaceKey, Projector]]:
    """The anchor set and fitted projectors, from the partial build if it has them, else chosen and fitted."""
    spaces = [IMAGE, *(SpaceKey.text(lang) for lang in cfg.data.languages)]
    if (work / PROJECTORS).is_file() and (work / ANCHORS).is_file():
        return AnchorSet.load(work / ANCHORS), load_projectors(work / PROJECTORS, spaces, cfg.projector)
    anchors = _anchor_set(cfg, ds, encoders)
    projectors = _fit_projectors(anchors, encoders, cfg.projector, cfg.data.languages,
                                 cfg.anchors.caption_pooling, cfg.batch_size)
    with atomic_write(work / ANCHORS) as tmp:
        anchors.save(tmp)
    with atomic_write(work / PROJECTORS) as tmp:  # written last: its presence means both are whole
        save_projectors(tmp, projectors)
    return anchors, projectors


def _anchor_set(cfg: Config, ds: Any, encoders: dict[SpaceKey, Encoder]) -> AnchorSet:
    """The configured anchor file, or anchors chosen from the data (geometry-aware selectors look at a pool)."""
    languages = cfg.data.languages
    if cfg.anchors.path:
        return AnchorSet.load(cfg.anchors.path)  # its languages were checked by check_config
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


def _fit_projectors(
    anchors: AnchorSet, encoders: dict[SpaceKey, Encoder], options: ProjectorConfig, languages: list[str],
    pooling: Pooling = "mean", batch_size: int = 64,
) -> dict[SpaceKey, Projector]:
    """One projector per space of the index (the image, each language), fitted by the one rule
    (:func:`~pipeline.space.fit.fit_projectors`); anchor weights are measured on the primary language."""
    spaces = [IMAGE, *(SpaceKey.text(lang) for lang in languages)]
    sides = {s: embed_anchors(anchors, encoder_for(encoders, s), s, pooling, batch_size) for s in spaces}
    return fit_projectors(sides, options, total=len(anchors), pair=(SpaceKey.text(languages[0]), IMAGE))


def _write_skipped(skipped: list[BadRow], path: Path) -> None:
    """Which rows the build left out and why: written even when empty, so its absence means an older index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": pa.array([b.id for b in skipped], pa.string()),
                             "reason": pa.array([b.reason for b in skipped], pa.string())}), path)
