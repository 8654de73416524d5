"""``relspace info``: what an index directory holds, read from its manifest (no model or FAISS load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.spaces import MODALITIES
from .layout import index_file
from .manifest import Manifest
from .publish import tidy_if_idle
from .records import to_plain
from .verify import structure_problems

CANDIDATE_COLUMNS = ("name", "key", "params", "bytes", "p50_ms", "p99_ms", "recall_at_10", "reason")


def index_info(index_dir: str | Path) -> dict[str, Any]:
    """A JSON-able summary of an index: encoders, anchors, counts, FAISS factory and the auto choice if any.

    ``faiss.auto`` holds, per modality, the record of ``pipeline.ann.auto.choose_index``: the chosen factory
    key, its tuned search parameters, bytes, p50/p99 ms, recall@10 against Flat and every candidate's row.
    ``problems`` lists files missing, resized or unreadable (cheap checks; ``relspace verify`` reads everything).
    """
    index_dir = Path(index_dir)
    tidy_if_idle(index_dir)  # a crashed publish's leftovers go (and a missing index comes back) if no writer is at work
    m = Manifest.read(index_dir)
    files = {mod: (index_dir / index_file(mod)).stat().st_size if (index_dir / index_file(mod)).is_file() else None
             for mod in MODALITIES}
    return {
        "index_dir": str(index_dir),
        "package_version": m.package_version,
        "encoders": {str(key): {"spec": e.spec, "dim": e.dim} for key, e in m.encoders.items()},
        "anchors": {"count": m.anchors.count, "hash": m.anchors.hash, "strategy": m.anchors.strategy,
                    "spaces": to_plain(m.anchors.spaces)},
        "projector": to_plain(m.projector),
        "counts": to_plain(m.counts),
        "faiss": {k: v for k, v in to_plain(m.faiss).items() if k != "auto"},
        "faiss_file_bytes": files,
        "auto": to_plain(m.faiss.auto),
        "checksums": len(m.files),
        "problems": [str(p) for p in structure_problems(index_dir, m)],
    }


def format_info(info: dict[str, Any]) -> str:
    """The summary as readable lines, with a table of the auto choice's candidates per modality."""
    counts = info["counts"]
    lines = [f"index      {info['index_dir']} (relspace {info['package_version']})"]
    lines += [f"encoder    {key:<10s} {e['spec']} (dim {e['dim']})" for key, e in info["encoders"].items()]
    a = info["anchors"]
    lines.append(f"anchors    {a['count']} ({a.get('strategy') or '?'}), hash {str(a['hash'])[:12]}…")
    lines.append(f"counts     {counts.get('items')} items, {counts.get('image')} image vectors, "
                 f"{counts.get('text')} caption vectors")
    f = info["faiss"]
    lines.append(f"faiss      {f.get('factory')} ({f.get('metric', '?')}); files: " + ", ".join(
        f"{mod}.faiss {_mb(n)}" for mod, n in info["faiss_file_bytes"].items() if n is not None))
    for mod, rec in info["auto"].items():
        lines.append(f"\nauto {mod}: {rec['key']} {_params(rec.get('params'))}  {_mb(rec.get('bytes'))}, "
                     f"p50 {_num(rec.get('p50_ms'))} ms, p99 {_num(rec.get('p99_ms'))} ms, "
                     f"recall@10 {_num(rec.get('recall_at_10'))}")
        if rec.get("budget"):
            b = rec["budget"]
            lines.append(f"  budget: max_memory {_mb(b.get('max_memory'))}, max_query_ms {b.get('max_query_ms')}, "
                         f"recall {b.get('recall')} @ {b.get('k')}; tuned on {rec.get('queries')} cross-modal queries")
        rows = [[_cell(c, r.get(c)) for c in CANDIDATE_COLUMNS] for r in rec.get("candidates", [])]
        if rows:
            widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(CANDIDATE_COLUMNS)]
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(CANDIDATE_COLUMNS, widths)).rstrip())
            lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"DAMAGED    {p}" for p in info.get("problems", [])]
    return "\n".join(lines)


def _cell(column: str, value: Any) -> str:
    if column == "params":
        return _params(value)
    if column == "bytes":
        return _mb(value)
    return _num(value) if isinstance(value, float) else ("-" if value is None else str(value))


def _params(params: dict[str, Any] | None) -> str:
    return ",".join(f"{k}={v:g}" for k, v in (params or {}).items()) or "-"


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"
