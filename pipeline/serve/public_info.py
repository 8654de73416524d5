"""What ``GET /info`` tells a client about the index: what it needs to query it, and nothing from the host's disk."""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from pipeline.core.limits import Limits
from pipeline.core.specs import Member, format_members, parse_members
from pipeline.data import index_attribution
from pipeline.version import __version__

if TYPE_CHECKING:
    from pipeline.retriever import Retriever

# A local path inside an encoder spec: absolute, home-relative or dot-relative, POSIX or Windows.
_LOCAL_PATH = re.compile(r"^(?:/|~|\.{1,2}[/\\]|[A-Za-z]:[/\\]|\\\\)")


def public_spec(spec: str) -> str:
    """An encoder spec without local directories: ``st:/home/me/models/minilm`` -> ``st:minilm``.

    Bundled aliases (``minilm``) and hub names (``st:sentence-transformers/all-MiniLM-L6-v2``) are kept:
    they are public and tell a client which model answers. A local path is reduced to its last part, which
    still names the model but not where the server keeps it. Parts are those the encoder schemes use:
    ``@`` separates a checkpoint or tokenizer, and open_clip writes ``arch/<tag or path>``. An ensemble is
    reduced member by member.
    """
    members = parse_members(spec)
    if len(members) > 1:
        return format_members([Member(public_spec(m.spec), m.weight) for m in members])
    scheme, sep, body = spec.partition(":")
    if not sep:
        return spec
    parts = []
    for part in body.split("@"):
        head, slash, tail = part.partition("/")
        if _LOCAL_PATH.match(part):
            part = _basename(part)
        elif slash and _LOCAL_PATH.match(tail):  # open_clip:ViT-B-32//abs/ckpt.pt
            part = f"{head}/{_basename(tail)}"
        parts.append(part)
    return f"{scheme}:{'@'.join(parts)}"


def _basename(path: str) -> str:
    return (PureWindowsPath(path) if "\\" in path else PurePosixPath(path)).name or path


def public_info(retriever: Retriever, limits: Limits) -> dict[str, Any]:
    """The ``/info`` body: version, languages, counts, limits, attribution and a public manifest summary.

    The manifest's full config is left out: it holds the builder's local paths (data, cache, models).
    ``manifest`` keeps the keys the search page reads (``encoders.<key>.spec``, ``anchors.count``).
    """
    m = retriever.manifest
    attribution = index_attribution(m.config)
    return {
        "version": __version__,
        "generation": m.generation,  # the index version being served; it grows with every add, remove, reanchor
        "manifest": {
            "encoders": {str(key): {"spec": public_spec(rec.spec), "dim": rec.dim} for key, rec in m.encoders.items()},
            "anchors": {"count": m.anchors.count},
            "projector": dataclasses.asdict(m.projector),
            "faiss": {"factory": m.faiss.factory, "metric": m.faiss.metric},
            "package_version": m.package_version,
        },
        "languages": retriever.languages,
        "caption_languages": retriever.caption_languages,
        "counts": counts(retriever),
        "limits": limits.to_dict(),
        "attribution": attribution.to_dict() if attribution is not None else None,
    }


def counts(retriever: Retriever) -> dict[str, int]:
    """Vectors stored per modality."""
    return {m: int(index.ntotal) for m, index in retriever.indexes.items()}
