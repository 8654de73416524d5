"""Index building: embed the data, choose and embed anchors, project, and write the directory atomically."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .anchors import SELECTORS, AnchorSet, check_anchor_count, select_anchors, selection_features
from .config import Config
from .data import BadRow, cache_dir, caption_rows, captions, load_data
from .data.images import load_image
from .embed import embed_dataset, pool_captions
from .encoders import Encoder, check_spec, make_encoder
from .files import atomic_directory
from .index import build_faiss, write_faiss
from .layout import ANCHORS, CONFIG, PROJECTORS, SKIPPED, THUMBNAILS, index_file, items_file
from .manifest import MANIFEST, Manifest
from .progress import progress
from .relative import RelativeProjector, save_projectors
from .spaces import IMAGE, MODALITIES, SpaceKey
from .version import __version__

logger = logging.getLogger(__name__)

# Columns that say how an item is stored rather than what it is: not copied into hit metadata.
STORAGE_COLUMNS = ("image", "captions")


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


def encoder_for(encoders: dict[SpaceKey, Encoder], space: SpaceKey) -> Encoder:
    """The encoder of a space: its own if it has one, else its modality's shared encoder."""
    return encoders.get(space) or encoders[space.shared]


def build_index(cfg: Config, out: Path, *, device: str | None = None) -> dict[SpaceKey, Encoder]:
    """Write a complete index for ``cfg`` to ``out``; returns the encoders so callers can reuse them."""
    languages = cfg.data.languages
    check_config(cfg)
    skipped: list[BadRow] = []
    with timed("loading data"):
        ds = load_data(cfg.data, skipped=skipped)
    if not cfg.anchors.path:
        check_anchor_count(cfg.anchors.count, len(ds))  # before any model loads or item is embedded
    encoders = load_encoders(cfg, device)
    cache = cache_dir(cfg.data) / "embeddings"
    # One text row per caption: items with several captions have several rows, a missing translation none.
    rows = {lang: caption_rows(captions(ds, lang)) for lang in languages}
    with timed("embedding images"):
        x_image = embed_dataset(ds, encoders[IMAGE], batch_size=cfg.batch_size, cache=cache)
    with timed("embedding captions"):
        x_text = {
            lang: embed_dataset(ds, encoder_for(encoders, SpaceKey.text(lang)), lang=lang,
                                batch_size=cfg.batch_size, cache=cache)
            for lang in languages
        }

    with timed("anchors"):
        anchors, a_image, a_text = _anchors(cfg, ds, encoders, x_image, x_text, {k: r for k, (r, _) in rows.items()})
    projectors = {IMAGE: RelativeProjector(cfg.projector).fit(a_image)}
    projectors.update({SpaceKey.text(lang): RelativeProjector(cfg.projector).fit(vecs, positions=pos,
                                                                                total=len(anchors))
                       for lang, (vecs, pos) in a_text.items()})

    with timed("projecting"):
        r_image = projectors[IMAGE].transform(x_image)
        r_text = [projectors[SpaceKey.text(lang)].transform(x_text[lang]) for lang in languages]
    with timed("building FAISS"):
        indexes = {
            "image": build_faiss(r_image, cfg.index.factory, cfg.index.train_size, cfg.anchors.seed),
            "text": build_faiss(np.vstack(r_text), cfg.index.factory, cfg.index.train_size, cfg.anchors.seed),
        }
    n = len(ds)
    ends = np.cumsum([len(rows[lang][1]) for lang in languages]).tolist()
    lang_ranges = {lang: [start, end] for lang, start, end in zip(languages, [0, *ends], ends)}
    infos = {str(key): e.info.to_dict() for key, e in encoders.items()}
    manifest = Manifest(
        encoders=infos,
        stored_by=infos,
        anchors={"hash": anchors.hash, "count": len(anchors), "strategy": cfg.anchors.strategy,
                 "spaces": [str(key) for key in projectors], "caption_pooling": cfg.anchors.caption_pooling,
                 "per_language": {lang: len(pos) for lang, (_, pos) in a_text.items()}},
        projector=dict(vars(cfg.projector)),
        faiss={"factory": cfg.index.factory, "metric": "inner_product", "normalized": True},
        counts={"items": n, "image": indexes["image"].ntotal, "text": indexes["text"].ntotal,
                "text_lang_ranges": lang_ranges, "skipped": len(skipped)},
        package_version=__version__,
        config=cfg.to_dict(),
    )
    with timed("writing"), atomic_directory(out) as tmp:
        for m, index in indexes.items():
            write_faiss(index, tmp / index_file(m))
        save_projectors(tmp / PROJECTORS, projectors)
        anchors.save(tmp / ANCHORS)
        _write_items(ds, rows, tmp)
        _write_skipped(skipped, tmp / SKIPPED)
        if cfg.index.thumbnails:
            _write_thumbnails(ds, cfg.index.thumbnails, tmp / THUMBNAILS)
        cfg.save(tmp / CONFIG)
        (tmp / MANIFEST).write_text(manifest.to_json())
    logger.info("wrote index %s: %d images, %d captions, %d anchors", out, indexes["image"].ntotal,
                indexes["text"].ntotal, len(anchors))
    return encoders


def _anchors(
    cfg: Config,
    ds: Any,
    encoders: dict[SpaceKey, Encoder],
    x_image: np.ndarray,
    x_text: dict[str, np.ndarray],
    rows: dict[str, np.ndarray],
) -> tuple[AnchorSet, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The anchor set, its image embeddings, and per language its pooled caption embeddings and positions.

    ``x_text[lang]`` holds one row per caption and ``rows[lang]`` the item of each row. An anchor without a
    caption in a language is absent from that language's projector (its position is missing).
    """
    languages, pooling = cfg.data.languages, cfg.anchors.caption_pooling
    if cfg.anchors.path:
        anchors = AnchorSet.load(cfg.anchors.path)
        missing = [lang for lang in languages if lang not in anchors.captions]
        if missing:
            raise ValueError(f"anchor file {cfg.anchors.path} has no captions in {missing}")
        a_image = encoders[IMAGE].encode(anchors.images, batch_size=cfg.batch_size, ids=anchors.ids)
        a_text = {lang: anchors.text_vectors(encoder_for(encoders, SpaceKey.text(lang)), lang, pooling,
                                             cfg.batch_size) for lang in languages}
    else:
        primary = languages[0]
        idx = select_anchors(
            len(ds), cfg.anchors.count, strategy=cfg.anchors.strategy, seed=cfg.anchors.seed,
            features=lambda: selection_features(x_image, pool_captions(x_text[primary], rows[primary], range(len(ds)),
                                                                       pooling)[0]))
        anchors, a_image = AnchorSet.from_dataset(ds, idx, languages), x_image[idx]
        a_text = {lang: pool_captions(x_text[lang], rows[lang], idx, pooling) for lang in languages}
    for lang, (_, pos) in a_text.items():
        if len(pos) < 2:
            raise ValueError(f"only {len(pos)} of {len(anchors)} anchors have a caption in {lang!r}; a language "
                             f"needs at least 2 (drop it from data.languages or choose other anchors)")
        if len(pos) < len(anchors):
            logger.warning("%d of %d anchors have no caption in %r: that language's projector uses the other %d",
                           len(anchors) - len(pos), len(anchors), lang, len(pos))
    return anchors, a_image, a_text


def _write_items(ds: Any, rows: dict[str, tuple[np.ndarray, list[str]]], out: Path) -> None:
    """Metadata aligned with FAISS ids: one row per image, and one row per caption, language by language."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = ds.remove_columns([c for c in STORAGE_COLUMNS if c in ds.column_names])
    pq.write_table(meta.with_format("arrow")[:], out / items_file("image"))
    ids = np.asarray(ds["id"], dtype=object)
    table = {"id": [], "lang": [], "caption": []}
    for lang, (items, texts) in rows.items():
        table["id"] += ids[items].tolist()
        table["lang"] += [lang] * len(texts)
        table["caption"] += texts
    pq.write_table(pa.table(table), out / items_file("text"))


def _write_skipped(skipped: list[BadRow], path: Path) -> None:
    """Which rows the build left out and why: written even when empty, so its absence means an older index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": pa.array([b.id for b in skipped], pa.string()),
                             "reason": pa.array([b.reason for b in skipped], pa.string())}), path)


def _write_thumbnails(ds: Any, side: int, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids, pngs = [], []
    with progress(total=len(ds), desc="thumbnails") as bar:
        for item_id, image in zip(ds["id"], ds["image"]):
            img = load_image(image, item=item_id)
            img.thumbnail((side, side))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            ids.append(item_id)
            pngs.append(buf.getvalue())
            bar.update(1)
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "png": pa.array(pngs, pa.binary())}), path)

