"""Retriever: the public Python API. Build an index from a config, load it, search it with text or images."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .ann.faiss_index import check_scores, read_faiss, search_faiss
from .config import Config, load_config
from .core.io import read_parquet
from .core.limits import Limits
from .core.spaces import IMAGE, MODALITIES, SpaceKey
from .core.specs import ensemble_spec
from .data.images import load_image
from .encoders import Encoder, create_encoder
from .indexing.build import build_index
from .indexing.engines import Engine, make_engine
from .indexing.reanchor import destination, reanchor
from .indexing.update import add_data, update_index
from .query import Query, check_lang, check_one_query, check_result_lang
from .space.anchors import AnchorSet
from .space.projectors import Projector, load_projectors
from .store.grouping import search_one_per_item
from .store.items import Hit, ItemTables
from .store.layout import PROJECTORS, index_file, items_file
from .store.manifest import Manifest
from .store.publish import tidy_if_idle
from .store.verify import check_sizes, verify_index

logger = logging.getLogger(__name__)


class Retriever:
    """A loaded relspace index: relative-space FAISS indexes for images and captions, and their encoders.

    Build with :meth:`build`, open with :meth:`load`, query with :meth:`search`. Encoders load on first
    use, so a text-only user never pays for the image model.
    """

    def __init__(
        self,
        index_dir: Path,
        manifest: Manifest,
        projectors: dict[SpaceKey, Projector],
        indexes: dict[str, Any],
        items: dict[str, Any],
        *,
        encoders: dict[SpaceKey, Encoder] | None = None,
        device: str | None = None,
        limits: Limits | None = None,
    ):
        self.index_dir, self.manifest, self.projectors = index_dir, manifest, projectors
        self.indexes, self.items = indexes, items
        self.tables = ItemTables(items, index_dir)
        self.device = device
        self.limits = limits or Limits()  # bounds every query obeys (k, text length, image pixels)
        self._encoders: dict[SpaceKey, Encoder] = dict(encoders or {})
        self._load_lock = threading.Lock()

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        config: str | Path | Config | None = None,
        out_dir: str | Path | None = None,
        *,
        device: str | None = None,
        resume: bool | None = None,
        engine: str | Engine | None = None,
    ) -> Retriever:
        """Embed the configured data, fit the relative projectors on the anchors and write an index.

        The index is written to a temporary directory and renamed over ``out_dir`` only when complete,
        so a failed build leaves any previous index intact.

        Args:
            config: YAML path or Config; None is the embedded OpenMoji demo.
            out_dir: where to write; default ``indexes/<config.name>``.
            device: torch device for the encoders; default the config's, else CUDA when available.
            resume: None continues a stopped build of ``out_dir`` from its finished shards when there is
                one; True requires one; False starts over.
            engine: where the shards and FAISS adds run: ``"local"`` (default), ``"ray"``, or an engine
                instance such as ``RayEngine(address=..., num_actors=...)`` (:mod:`pipeline.indexing.engines`).

        Returns:
            The loaded Retriever for the new index.
        """
        cfg = load_config(config)
        out = Path(out_dir) if out_dir is not None else Path("indexes") / cfg.name
        encoders = build_index(cfg, out, device=device or cfg.device, resume=resume, engine=make_engine(engine))
        return cls.load(out, device=device or cfg.device, encoders=encoders)

    @classmethod
    def load(
        cls,
        index_dir: str | Path,
        *,
        text_encoder: str | None = None,
        image_encoder: str | None = None,
        anchors: str | Path | None = None,
        device: str | None = None,
        limits: Limits | None = None,
        encoders: dict[SpaceKey, Encoder] | None = None,
        verify: bool = False,
    ) -> Retriever:
        """Open an index directory; every file's size is checked against the manifest's record (a stat each).

        Args:
            index_dir: a directory written by :meth:`build`.
            text_encoder: the text encoder spec the caller intends to query with; refused if it is not
                the one the index was built with.
            image_encoder: likewise for images.
            anchors: an anchor parquet the caller's side uses; refused if its hash differs.
            device: torch device for the query encoders.
            limits: bounds on queries; default :class:`~pipeline.core.limits.Limits()`.
            encoders: query encoders already loaded (by space), reused instead of loaded again; one the
                index does not name (a reanchor replaced it) is left out. See :meth:`reload`.
            verify: first check every file's checksum and every stored vector's norm, as ``relspace verify``
                does (reads the whole index; an index without checksums is refused).

        Raises:
            IndexMismatchError: the manifest does not fit the given encoders or anchors.
            IndexCorruptError: a file is missing or of another size than published (or, with ``verify``, damaged).
        """
        index_dir = Path(index_dir)
        if not index_dir.exists():  # a publish that crashed between its renames: restore the newest version
            tidy_if_idle(index_dir, clean=False)
        if verify:
            verify_index(index_dir).raise_if_damaged()
        manifest = Manifest.read(index_dir)
        check_sizes(index_dir, manifest)
        for modality, spec in (("text", text_encoder), ("image", image_encoder)):
            if spec is not None:
                manifest.check(modality, spec=ensemble_spec(spec, f"{modality}_encoder"))
        if anchors is not None:
            manifest.check_anchors(AnchorSet.load(anchors).hash)
        projectors = load_projectors(index_dir / PROJECTORS, manifest.spaces, manifest.projector)
        manifest.check_dims(index_dir, {space: p.dim for space, p in projectors.items()})
        indexes = {m: read_faiss(index_dir / index_file(m)) for m in MODALITIES}
        items = {m: read_parquet(index_dir / items_file(m), f"{m} item table") for m in MODALITIES}
        manifest.check_counts(index_dir, {m: indexes[m].ntotal for m in MODALITIES},
                              {m: items[m].num_rows for m in MODALITIES})
        logger.info("loaded index %s (%s)", index_dir, ", ".join(f"{m}: {indexes[m].ntotal}" for m in MODALITIES))
        # Loaded encoders carry over only where the index still names them (a reanchor may have replaced one).
        kept = {k: e for k, e in (encoders or {}).items() if (rec := manifest.encoders.get(k)) and rec.spec == e.spec}
        return cls(index_dir, manifest, projectors, indexes, items, encoders=kept, device=device, limits=limits)

    # -- queries --------------------------------------------------------------------------------------

    @property
    def languages(self) -> list[str]:
        """Languages whose anchor captions can project a text query."""
        return [s.lang for s in self.projectors if s.lang is not None]

    @property
    def caption_languages(self) -> list[str]:
        """Languages of the stored captions, which ``result_lang`` may select."""
        return list(self.manifest.counts.text_langs) or self.languages  # the build's order

    def encoder(self, modality: str, lang: str | None = None) -> Encoder:
        """The query encoder of ``modality`` (and text ``lang``), loaded on first use and checked."""
        key = self.manifest.encoder_key(SpaceKey.text(lang) if modality == "text" and lang else SpaceKey(modality))
        if key not in self._encoders:
            with self._load_lock:  # concurrent first queries (a server) must load a model once, not twice
                if key not in self._encoders:
                    enc = create_encoder(self.manifest.encoders[key].spec, modality, self.device)
                    self.manifest.check(key, spec=enc.spec, dim=enc.dim)
                    self._encoders[key] = enc
        return self._encoders[key]

    def embed(self, *, text: str | list[str] | None = None, image: Any = None, lang: str | None = None) -> np.ndarray:
        """Relative vectors (n, anchors) of texts or images, as stored in the index."""
        check_one_query(text, image)  # the rules of Query.validate, whose QueryError says what is wrong
        lang = check_lang(lang, self.languages, text=text is not None)
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            vecs = self.encoder("text", lang).encode(texts, show_progress=False)
            return self.projectors[SpaceKey.text(lang)].transform(vecs)
        return self._embed_images(image if isinstance(image, list) else [image], self.limits.max_image_pixels)

    def _embed_images(self, images: list[Any], max_pixels: int) -> np.ndarray:
        # Decoded here rather than in the encoder, so errors name "the query image", not an item "#0".
        names = ["the query image"] if len(images) == 1 else [f"query image #{i}" for i in range(len(images))]
        aspect = self.limits.max_aspect_ratio
        rgb = [load_image(x, what=n, max_pixels=max_pixels, max_aspect_ratio=aspect) for x, n in zip(images, names)]
        return self.projectors[IMAGE].transform(self.encoder("image").encode(rgb, show_progress=False))

    def search(
        self,
        text: str | None = None,
        image: Any = None,
        k: int = 10,
        *,
        target: str | None = None,
        lang: str | None = None,
        result_lang: str | None = None,
    ) -> list[Hit]:
        """Find the ``k`` nearest items to a text or an image.

        Args:
            text: a query string (searches images unless ``target`` says otherwise).
            image: a PIL image, a path or encoded bytes (searches captions unless ``target`` says otherwise).
            k: number of hits, 1..``limits.max_k``.
            target: ``"image"`` or ``"text"``; default the other modality (same-modality search works too).
            lang: language of a text query; it is projected through that language's anchor captions.
            result_lang: keep only captions in this language when searching text; without it, captions in
                every language are searched and each item comes once, its matched languages in ``captions``.

        Returns:
            Hits, best first.

        Raises:
            QueryError: the query breaks a rule of :meth:`pipeline.query.Query.validate` (a ValueError).
            ImageTooLargeError: the image has more than ``limits.max_image_pixels`` pixels (a ValueError).
        """
        query = Query(text=text, image=image, k=k, target=target, lang=lang, result_lang=result_lang)
        return self.search_query(query)

    def check_query(self, query: Query, limits: Limits | None = None) -> Query:
        """Validate ``query`` against this index's languages and ``limits`` (default ``self.limits``)."""
        return query.validate(
            languages=self.languages, caption_languages=self.caption_languages, limits=limits or self.limits
        )

    def search_query(self, query: Query, *, limits: Limits | None = None) -> list[Hit]:
        """Run a :class:`~pipeline.query.Query`, validated first against ``limits`` (default ``self.limits``)."""
        limits = limits or self.limits
        q = self.check_query(query, limits)
        if q.text is not None:
            xq = self.embed(text=q.text, lang=q.lang)
        else:
            xq = self._embed_images([q.image], limits.max_image_pixels)
        target = q.target or "text"  # always filled by validate; the fallback only narrows the type
        return self.search_vectors(xq, q.k, target=target, result_lang=q.result_lang)[0]

    def search_vectors(
        self, xq: np.ndarray, k: int = 10, *, target: str = "image", result_lang: str | None = None
    ) -> list[list[Hit]]:
        """Search with relative vectors already computed (by :meth:`embed`): one list of hits per row.

        Captions in every language (``target="text"``, no ``result_lang``) come one hit per item, with the
        languages it matched in ``Hit.captions`` (:mod:`pipeline.store.grouping`).
        """
        check_result_lang(result_lang, self.caption_languages, target=target)
        if target == "text" and result_lang is None:
            return search_one_per_item(self.indexes["text"], self.tables, xq, k, len(self.caption_languages))
        keep = self.tables.in_lang(result_lang) if result_lang is not None else None
        D, I = search_faiss(self.indexes[target], xq, k, keep=keep)
        check_scores(self.indexes[target], xq, D, I, self.index_dir / index_file(target))  # corruption, not hits
        return [self.tables.hits(target, d, i) for d, i in zip(D, I)]

    # -- re-anchoring -----------------------------------------------------------------------------------

    def swap_encoder(
        self,
        modality: str,
        encoder: str | list[Any],
        *,
        lang: str | None = None,
        out: str | Path | None = None,
        in_place: bool = False,
    ) -> Retriever:
        """Replace the query encoder of ``modality`` by re-embedding the anchors alone (see :mod:`.reanchor`).

        Args:
            modality: ``"text"`` or ``"image"``.
            encoder: the new encoder's spec, or an ensemble's (a list, or ``"minilm + minilm-l3"``): adding a
                member to the query side this way re-embeds the anchors only.
            lang: for text, swap only this language's encoder (e.g. a dedicated Japanese model); by
                default every language served by the shared text encoder is re-anchored.
            out: write the re-anchored index here; this index stays as it was.
            in_place: rewrite this index instead (its old encoder can no longer query it).

        Returns:
            A Retriever on the re-anchored index (``self``, updated, when in place).
        """
        dest = destination(self.index_dir, out, in_place)
        _, _, enc = reanchor(self.index_dir, self.manifest, self.projectors, modality, encoder, dest,
                                             lang=lang, device=self.device)
        key = SpaceKey.text(lang) if lang is not None else SpaceKey(modality)
        if dest.resolve() != self.index_dir.resolve():
            return Retriever.load(dest, device=self.device, encoders={**self._encoders, key: enc})
        self._encoders[key] = enc
        return self._reload()

    # -- updates --------------------------------------------------------------------------------------

    def add(
        self, config: str | Path | Config, *, upsert: bool = False, engine: str | Engine | None = None
    ) -> Retriever:
        """Add the items of ``config``'s data section, projected as a build of this index would, and reload.

        An id already in the index is refused, naming it, unless ``upsert`` replaces that item (:mod:`.update`).
        ``engine`` is as in :meth:`build`.
        """
        add_data(self.index_dir, self.manifest, load_config(config), self.projectors,
                 lambda s: self.encoder(s.modality, s.lang), upsert=upsert, engine=make_engine(engine))
        return self._reload()

    def remove(self, ids: str | list[str]) -> Retriever:
        """Remove items (their image and every caption) by id, atomically, and reload; an unknown id is refused."""
        update_index(self.index_dir, self.manifest, remove=[ids] if isinstance(ids, str) else list(ids),
                     engine=make_engine())
        return self._reload()

    def reload(self) -> Retriever:
        """A new Retriever on the directory's current version, reusing the encoders loaded here (a server's
        reload after another process's update: no model loads again); this one stays on its own version."""
        return Retriever.load(self.index_dir, device=self.device, limits=self.limits, encoders=self._encoders)

    def _reload(self) -> Retriever:
        """Become :meth:`reload`'s Retriever (after this object's own update), keeping the load lock."""
        vars(self).update({k: v for k, v in vars(self.reload()).items() if k != "_load_lock"})
        return self

    # -- items ----------------------------------------------------------------------------------------

    def item(self, item_id: str) -> dict[str, Any] | None:
        """An item's metadata (from the image table), or None if the id is unknown."""
        return self.tables.item(item_id)

    def thumbnail(self, item_id: str) -> bytes | None:
        """The stored PNG thumbnail of an item, or None."""
        return self.tables.thumbnail(item_id)

    def __repr__(self) -> str:
        enc = {str(m): r.spec for m, r in self.manifest.encoders.items()}
        counts = {m: self.indexes[m].ntotal for m in MODALITIES}
        return f"Retriever({str(self.index_dir)!r}, encoders={enc}, counts={counts})"

