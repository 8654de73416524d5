"""Re-anchoring: swap an index's query encoder by re-embedding the anchors alone, never the stored vectors.

A query embedded by the new encoder and projected onto the same anchors (embedded by that encoder) lands
in the same relative space as the stored vectors, so the cost is one pass over the anchors, whatever the
corpus size. The new directory hard-links every unchanged file and is published atomically.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from ..core.spaces import SpaceKey
from ..core.specs import ensemble_spec
from ..encoders import Encoder, create_encoder
from ..space.anchors import AnchorSet
from ..space.fit import embed_anchors, fit_projectors, stored_weights
from ..space.projectors import Projector, save_projectors
from ..store.files import atomic_directory, index_lock, link_tree
from ..store.layout import ANCHORS, MANIFEST, PROJECTORS
from ..store.manifest import Manifest
from ..store.records import ReanchorEvent, timestamp
from ..store.verify import record_files

logger = logging.getLogger(__name__)


def destination(index_dir: Path, out: str | Path | None, in_place: bool) -> Path:
    """Where a re-anchored index goes: ``out``, or the index itself only when the caller opts in."""
    if out is not None and in_place:
        raise ValueError("give either out=DIR (a new index) or in_place=True (rewrite this one), not both")
    if out is None and not in_place:
        raise ValueError(
            f"re-anchoring writes a new index: give out=DIR (CLI: --out DIR), or in_place=True (CLI: --in-place) "
            f"to rewrite {index_dir}, after which its old encoder can no longer query it"
        )
    if out is not None and Path(out).resolve() == Path(index_dir).resolve():
        raise ValueError(f"out={out} is the index itself; pass in_place=True (CLI: --in-place) to rewrite it")
    return Path(index_dir) if out is None else Path(out)


def reanchor(
    index_dir: Path,
    manifest: Manifest,
    projectors: dict[SpaceKey, Projector],
    modality: str,
    spec: str | list[Any],
    out: Path,
    *,
    lang: str | None = None,
    device: str | None = None,
) -> tuple[Manifest, dict[SpaceKey, Projector], Encoder]:
    """Refit the projectors that the new encoder takes over, with the index's anchor weights, and write the
    re-anchored index to ``out``.

    Args:
        index_dir: the index to re-anchor (left untouched unless ``out`` is the same directory).
        manifest: its manifest.
        projectors: its projectors by space.
        modality: the side to swap, ``"text"`` or ``"image"``.
        spec: the new encoder's spec; it is loaded only once the request has been checked.
        out: the destination directory.
        lang: for text, swap only this language's encoder; by default every language served by the
            shared text encoder is re-anchored.
        device: torch device for the new encoder.

    Returns:
        The new manifest and projectors, as written, and the loaded encoder.
    """
    key = SpaceKey(modality)  # refuses an unknown modality
    spec = ensemble_spec(spec, f"{modality} encoder")  # a list of members is one ensemble spec
    languages = [s.lang for s in projectors if s.lang is not None]
    if lang is not None and (modality != "text" or lang not in languages):
        raise ValueError(f"lang={lang!r} needs a text encoder and one of the index's languages {languages}")
    anchors = AnchorSet.load(index_dir / ANCHORS)
    manifest.check_anchors(anchors.hash)  # the anchor file must be the one the index was built on
    encoder = create_encoder(spec, modality, device)  # type: ignore[arg-type]
    key = SpaceKey.text(lang) if lang is not None else key
    # A shared encoder serves every space of its modality that has no encoder of its own.
    spaces = [s for s in projectors if s == key or (key.lang is None and s.modality == modality
                                                     and manifest.encoder_key(s) == key)]
    options = next(iter(projectors.values())).options
    pooling = manifest.anchors.caption_pooling
    # The anchor weights the build measured are reused, never measured again on the new encoder's anchors: they
    # shape the coders of the spaces kept as they are too, so new weights would silently invalidate their vectors.
    weights = stored_weights(projectors)
    if options.anchor_weights != "none" and weights is None:
        raise ValueError(f"{index_dir}: projector.anchor_weights is {options.anchor_weights!r} but its projector "
                         "file stores no anchor weights; rebuild the index")
    refit = fit_projectors({s: embed_anchors(anchors, encoder, s, pooling) for s in spaces}, options,
                           total=len(anchors), weights=weights)
    new_projectors = {**projectors, **refit}
    new_manifest = copy.deepcopy(manifest)
    old = new_manifest.encoders[manifest.encoder_key(key)]
    new_manifest.encoders[key] = encoder.info
    new_manifest.history.append(ReanchorEvent(space=key, from_spec=old.spec, to_spec=encoder.spec,
                                              anchors=len(anchors), at=timestamp()))
    # Under the writers' lock, and only over the version it was derived from: an add or remove published since
    # the caller loaded ``manifest`` would otherwise be copied in under this manifest's old counts.
    with index_lock(index_dir):
        if Manifest.read(index_dir).generation != manifest.generation:
            raise ValueError(f"{index_dir} changed since it was loaded (an add, remove or reanchor was published); "
                             "load it again and retry")
        with atomic_directory(out) as tmp:
            link_tree(index_dir, tmp, skip={PROJECTORS, MANIFEST})
            save_projectors(tmp / PROJECTORS, new_projectors)
            new_manifest.succeed(out)
            record_files(tmp, new_manifest)  # the new projector file's checksum; the linked files' again
            (tmp / MANIFEST).write_text(new_manifest.to_json())
    logger.info("re-anchored %s: %s -> %s on %d anchors, written to %s", key, old.spec, encoder.spec,
                len(anchors), out)
    return new_manifest, new_projectors, encoder
