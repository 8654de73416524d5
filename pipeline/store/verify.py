"""Checksums of a published index, and ``relspace verify``: every byte checked, the damaged file named.

A publish records the size and SHA-256 of every file it writes at the top of the index directory, and of each
shard's ``shard.json``, which in turn records its shard's files (:func:`record_files`). Loading compares sizes
only (a stat per file: :func:`check_sizes`); :func:`verify_index` reads everything: checksums, and the norm of
every stored vector, since relative vectors are unit (or zero) vectors and anything else is damage that would
otherwise rank first for unrelated queries (a flipped exponent byte once scored 1.03e38).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..ann.faiss_index import EXACT_TOLERANCE, IndexCorruptError, read_faiss, score_tolerance
from ..core.hashing import file_sha256
from ..core.spaces import MODALITIES
from .layout import MANIFEST, SHARD_META, SHARDS, index_file, vectors_file
from .manifest import Manifest
from .records import FileRecord
from .shards import ShardError, list_shards, read_meta

__all__ = ["IndexCorruptError", "Problem", "VerifyReport", "check_sizes", "no_checksums", "record_files",
           "size_problems", "structure_problems", "verify_index"]

logger = logging.getLogger(__name__)

NORM_BYTES = 64 << 20  # vectors reconstructed or read per step of the norm check: bounded memory at any size


@dataclass(frozen=True)
class Problem:
    """One damaged file: its path inside the index and what is wrong with it."""

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass
class VerifyReport:
    """What :func:`verify_index` found: ``problems`` empty and ``has_checksums`` true is a pass, nothing else."""

    index_dir: Path
    has_checksums: bool = True  # False: written before publishes recorded checksums (never a pass)
    checked: list[str] = field(default_factory=list)  # files whose checksum was compared
    vectors: int = 0  # stored vectors whose norm was checked
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.has_checksums and not self.problems

    def raise_if_damaged(self) -> None:
        """For ``Retriever.load(verify=True)``: refuse the index, naming the first damaged file and the count."""
        if not self.has_checksums:
            raise IndexCorruptError(no_checksums(self.index_dir))
        if self.problems:
            more = f"; and {len(self.problems) - 3} more problems" if len(self.problems) > 3 else ""
            raise IndexCorruptError(f"{self.index_dir} is damaged: {'; '.join(map(str, self.problems[:3]))}{more}; "
                                    "rebuild the index")


def no_checksums(index_dir: Path) -> str:
    return f"{index_dir} has no checksums (written by an older relspace): rebuild it to verify"


def record_files(index_dir: Path, manifest: Manifest) -> None:
    """Record in ``manifest.files`` the size and SHA-256 of every file under ``index_dir`` but the manifest:
    top-level files, and each shard's ``shard.json`` (which holds the checksums of its shard's files).

    Called by every writer right before it writes the manifest, on the complete staging directory.
    """
    files = sorted(f.name for f in index_dir.iterdir() if f.is_file() and f.name != MANIFEST)
    files += [f"{SHARDS}/{p.name}/{SHARD_META}" for p in list_shards(index_dir / SHARDS)]
    manifest.files = {name: FileRecord(bytes=(index_dir / name).stat().st_size, sha256=file_sha256(index_dir / name))
                      for name in files}


def size_problems(index_dir: Path, manifest: Manifest) -> list[Problem]:
    """Files missing or of another size than recorded (the manifest's, and each shard's ``shard.json``): a stat
    per file, cheap enough for every load. An index without records is only checked for its shards."""
    problems = [p for name, rec in manifest.files.items() if (p := _size_problem(index_dir, name, rec.bytes))]
    for path in list_shards(index_dir / SHARDS):
        try:
            shard = read_meta(path)
        except ShardError as e:
            problems.append(Problem(f"{SHARDS}/{path.name}/{SHARD_META}", str(e)))
            continue
        for name, rec in shard.files.items():
            if p := _size_problem(index_dir, f"{SHARDS}/{path.name}/{name}", rec.get("bytes")):
                problems.append(p)
    return problems


def structure_problems(index_dir: Path, manifest: Manifest) -> list[Problem]:
    """:func:`size_problems`, and each FAISS file readable with the vector count the manifest records (memory-
    mapped: no vector is read), so an index written before checksums is checked too. For ``relspace info``."""
    problems = size_problems(index_dir, manifest)
    for m in MODALITIES:
        name = index_file(m)
        if any(p.file == name for p in problems):
            continue
        try:
            n = read_faiss(index_dir / name).ntotal
        except (OSError, ValueError) as e:
            problems.append(Problem(name, str(e)))
            continue
        if n != manifest.counts.vectors(m):
            problems.append(Problem(name, f"holds {n} vectors, but the manifest records {manifest.counts.vectors(m)}"))
    return problems


def check_sizes(index_dir: Path, manifest: Manifest) -> None:
    """Refuse an index with a missing or resized file, naming it (see :func:`size_problems`).

    Raises:
        FileNotFoundError: a file is missing, named.
        IndexCorruptError: the first file of another size, and how many others there are.
    """
    problems = size_problems(index_dir, manifest)
    missing = next((p for p in problems if p.reason == "missing"), None)
    if missing is not None:  # the error an incomplete index always gave (read_faiss, read_parquet)
        raise FileNotFoundError(f"{index_dir / missing.file} is missing; the index is incomplete: rebuild it")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IndexCorruptError(f"{index_dir} is damaged: {problems[0]}{more}; run `relspace verify {index_dir}` "
                                "and rebuild the index")


def verify_index(index_dir: str | Path) -> VerifyReport:
    """Check every file of an index against its recorded size and checksum, and every stored vector's norm.

    Never raises for damage: each damaged file is a :class:`Problem` in the report. A manifest that cannot be
    read is one too; an index whose manifest records no checksums reports ``has_checksums=False``.
    """
    index_dir = Path(index_dir)
    report = VerifyReport(index_dir)
    if not (index_dir / MANIFEST).is_file():
        raise FileNotFoundError(f"{index_dir} is not a relspace index: {MANIFEST} is missing")
    try:
        manifest = Manifest.read(index_dir)
    except ValueError as e:
        report.problems.append(Problem(MANIFEST, str(e)))
        return report
    report.has_checksums = bool(manifest.files)
    for name, rec in manifest.files.items():
        report.checked.append(name)
        if p := _file_problem(index_dir, name, rec.bytes, rec.sha256):
            report.problems.append(p)
    for path in list_shards(index_dir / SHARDS):
        rel = f"{SHARDS}/{path.name}"
        if f"{rel}/{SHARD_META}" not in manifest.files and report.has_checksums:
            report.problems.append(Problem(f"{rel}/{SHARD_META}", "not recorded in the manifest (a shard added "
                                                                  "after the publish)"))
        try:
            shard = read_meta(path)
        except ShardError as e:
            report.problems.append(Problem(f"{rel}/{SHARD_META}", str(e)))
            continue
        for name, rec in shard.files.items():
            report.checked.append(f"{rel}/{name}")
            if p := _file_problem(index_dir, f"{rel}/{name}", rec.get("bytes"), rec.get("sha256")):
                report.problems.append(p)
    damaged = {p.file for p in report.problems}
    for m in MODALITIES:
        report.problems += _norm_problems(index_dir, m, damaged, report)
    logger.info("verified %s: %d files, %d vectors, %d problems", index_dir, len(report.checked), report.vectors,
                len(report.problems))
    return report


def _size_problem(index_dir: Path, name: str, size: Any) -> Problem | None:
    f = index_dir / name
    if not f.is_file():
        return Problem(name, "missing")
    if f.stat().st_size != size:
        return Problem(name, f"{f.stat().st_size} bytes, but {size} were published (truncated or replaced)")
    return None


def _file_problem(index_dir: Path, name: str, size: Any, sha256: Any) -> Problem | None:
    if p := _size_problem(index_dir, name, size):
        return p
    if file_sha256(index_dir / name) != sha256:
        return Problem(name, "checksum differs from the one published (its contents changed)")
    return None


def _norm_problems(index_dir: Path, modality: str, damaged: set[str], report: VerifyReport) -> list[Problem]:
    """Vectors of impossible norm (NaN, inf, neither 0 nor 1 within the codes' tolerance), by file and id.

    The FAISS index is reconstructed where it can be (Flat, SQ, PQ, and IVF once given a direct map); the
    shards' vectors, from which every index is built, are checked always.
    """
    problems: list[Problem] = []
    name = index_file(modality)
    if (index_dir / name).is_file():
        try:
            index = read_faiss(index_dir / name)
            problems += _bad_norms(name, _reconstructed(index), score_tolerance(index), report)
        except (OSError, ValueError) as e:
            if name not in damaged:
                problems.append(Problem(name, str(e)))
        except RuntimeError as e:  # an index FAISS cannot reconstruct (HNSW's graph order, a mapped IVF)
            logger.info("%s: norms not checked from FAISS (%s); its shards' vectors are", name,
                        str(e).splitlines()[-1])
    for path in list_shards(index_dir / SHARDS):
        file = f"{SHARDS}/{path.name}/{vectors_file(modality)}"
        try:
            vectors = np.load(index_dir / file, mmap_mode="r", allow_pickle=False)
            step = _block_rows(vectors.shape[1] if vectors.ndim == 2 else 1)
            blocks = ((i, np.asarray(vectors[i:i + step])) for i in range(0, len(vectors), step))
            problems += _bad_norms(file, blocks, EXACT_TOLERANCE, report)
        except (OSError, ValueError) as e:
            if file not in damaged:
                problems.append(Problem(file, f"unreadable vectors ({e})"))
    return problems


def _block_rows(dim: int) -> int:
    return max(1, NORM_BYTES // (4 * max(1, dim)))


def _reconstructed(index: Any) -> Any:
    """The stored vectors, NORM_BYTES at a time, as (first id, block)."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.make_direct_map()
    step = _block_rows(index.d)
    for i in range(0, index.ntotal, step):
        yield i, index.reconstruct_n(i, min(step, index.ntotal - i))


def _bad_norms(file: str, blocks: Any, tolerance: float, report: VerifyReport, shown: int = 5) -> list[Problem]:
    """One problem per vector whose norm is neither ~1 nor 0 (at most ``shown``, then a count)."""
    bad: list[tuple[int, float]] = []
    for first, block in blocks:
        norms = np.linalg.norm(np.asarray(block, dtype=np.float64), axis=1)
        report.vectors += len(norms)
        wrong = ~((np.abs(norms - 1.0) <= tolerance) | (norms == 0.0))  # NaN and inf fail both
        bad += [(first + int(i), float(norms[i])) for i in np.flatnonzero(wrong)]
    problems = [Problem(file, f"vector #{i} has norm {n:.6g}, impossible for a relative vector")
                for i, n in bad[:shown]]
    if len(bad) > shown:
        problems.append(Problem(file, f"{len(bad) - shown} more vectors of impossible norm"))
    return problems
