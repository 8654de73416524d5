"""The one publish transaction of an index directory: a typed operation, the generation it was read at, one rule.

A build, an add, a remove and a re-anchoring all end in :func:`commit`. Under the writer lock it restores the
index from the leftovers of a crashed publish if the path holds none, removes those leftovers, refuses a
writer whose operation was prepared against another generation than the one on disk, and then writes the
new version in a sibling directory and exchanges it with the old one (:func:`~.files.swap_in`), so the index
path names a complete version, old or new, at every instant.

A build (``read_at=None``) replaces whatever is at its path, still under the lock; its manifest continues the
replaced index's generation count (generation = replaced + 1), so a server never sees the count go back.

``RELSPACE_FAULT=publish:<point>`` ends the process (``os._exit(137)``, as ``kill -9`` would) at one of
:data:`FAULT_POINTS`; ``tests/store/test_publish_faults.py`` runs every operation through every point.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.spaces import SpaceKey
from .files import fsync_dir, fsync_tree, index_lock, make_staging, swap_in
from .layout import MANIFEST, is_leftover
from .manifest import Manifest
from .records import HistoryEntry, ReanchorEvent, UpdateEvent, timestamp
from .verify import record_files

logger = logging.getLogger(__name__)

FAULT_ENV = "RELSPACE_FAULT"
# In publish order. "between-renames" also forces the two-rename fallback, whose window it names.
FAULT_POINTS = ("before-write", "after-write", "after-fsync", "after-manifest", "between-renames", "after-exchange",
                "before-cleanup", "after-cleanup")


@dataclass(frozen=True)
class Build:
    """A new index, replacing whatever is at the path: no history entry (a build starts a new history)."""

    def event(self) -> HistoryEntry | None:
        return None


@dataclass(frozen=True)
class Add:
    """Items added; ``upserted`` of them replaced items with the same id (which counts them as removed too)."""

    added: int
    upserted: int = 0

    def event(self) -> HistoryEntry | None:
        return UpdateEvent(added=self.added, removed=self.upserted, upserted=self.upserted, at=timestamp())


@dataclass(frozen=True)
class Remove:
    """Items removed by id."""

    removed: int

    def event(self) -> HistoryEntry | None:
        return UpdateEvent(added=0, removed=self.removed, upserted=0, at=timestamp())


@dataclass(frozen=True)
class Reanchor:
    """The query encoder of ``space`` swapped by re-embedding the anchors."""

    space: SpaceKey
    from_spec: str
    to_spec: str
    anchors: int

    def event(self) -> HistoryEntry | None:
        return ReanchorEvent(space=self.space, from_spec=self.from_spec, to_spec=self.to_spec, anchors=self.anchors,
                             at=timestamp())


Operation = Build | Add | Remove | Reanchor
# Fills the staging directory with every file but the manifest, from the current version (None: no index
# there yet), and returns the manifest to publish, its counts filled in and without the operation's entry.
Writer = Callable[[Path, "Manifest | None"], Manifest]


class ConflictError(ValueError):
    """Another writer published since the operation's index was read; reload it and retry."""


def commit(index_dir: str | Path, op: Operation, *, read_at: int | None, write: Writer,
           source: str | Path | None = None) -> Manifest:
    """Publish ``op``'s new version of ``index_dir``, written by ``write``; returns the manifest published.

    ``read_at`` is the generation the operation was prepared against (of ``source`` when the new version is
    derived from another index, as a re-anchoring to a new directory is; both are locked then). The whole of
    ``write`` runs under the lock, so it may read the current version and stage files beside it.

    Raises:
        ConflictError: the index's generation is no longer ``read_at``; nothing was written.
    """
    out = Path(index_dir).resolve()
    src = Path(source).resolve() if source is not None else out
    with contextlib.ExitStack() as locks:
        for p in sorted({out, src}, key=str):  # one lock order for every writer: two never wait on each other
            locks.enter_context(index_lock(p))
            tidy(p)
        current = _current(src, damaged_ok=read_at is None)
        now = None if current is None else current.generation
        if read_at is not None and now != read_at:
            raise ConflictError(f"the index at {src} changed since it was read (generation {read_at}, now "
                                f"{'no index' if now is None else now}): reload it and retry")
        if read_at is None and now is not None:
            logger.info("%s replaces generation %d of %s", type(op).__name__.lower(), now, out)
        return _publish(out, op, current, write)


def _publish(out: Path, op: Operation, current: Manifest | None, write: Writer) -> Manifest:
    """Write the new version beside ``out`` and swap it in: the steps, in order, each a fault point."""
    fault("before-write")
    tmp = make_staging(out)
    try:
        manifest = write(tmp, current)
        fault("after-write")
        files_written(tmp, manifest)
        fault("after-fsync")
        event = op.event()
        if event is not None:
            manifest.history.append(event)
        manifest.succeed(out)  # the generation after the one at ``out``; the new entry records it
        with open(tmp / MANIFEST, "w") as fh:  # last: a staging directory with a manifest is complete
            fh.write(manifest.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(tmp)
        fault("after-manifest")
        forced = os.environ.get(FAULT_ENV) == "publish:between-renames"
        old = swap_in(tmp, out, allow_exchange=not forced, between=lambda: fault("between-renames"))
    except BaseException:
        if out.exists():  # else the fallback failed between its renames: tmp is the version to recover
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    fault("after-exchange")
    fsync_dir(out.parent)
    fault("before-cleanup")
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    fault("after-cleanup")
    logger.info("published %s generation %d (%s)", out, manifest.generation, type(op).__name__.lower())
    return manifest


def files_written(tmp: Path, manifest: Manifest) -> None:
    """The files of the new version are all written: make them durable before the manifest that names them.

    The one place where a version's files are final and its manifest not yet written, for what the manifest
    should record about them (sizes, checksums).
    """
    fsync_tree(tmp)
    record_files(tmp, manifest)  # every file's size and checksum: relspace verify, and each load's size check


def fault(point: str) -> None:
    """End the process here, as ``kill -9`` would, if ``RELSPACE_FAULT`` names this publish step (tests only)."""
    if os.environ.get(FAULT_ENV) == f"publish:{point}":
        logger.error("fault injected at publish:%s; exiting", point)
        os._exit(137)


def tidy(index_dir: Path) -> None:
    """Recover ``index_dir`` from a crashed publish and remove that publish's leftovers; the caller holds the lock.

    Leftovers of a publish whose writer is gone: ``.NAME.tmp-*`` (a new version never swapped in, or after an
    exchange the replaced one), ``.NAME.old-*`` (a replaced version, in the rename fallback) and the update
    staging area ``.NAME.update``. The partial build ``.NAME.partial`` stays: a resumed build needs it.
    """
    recover(index_dir)
    for p in leftovers(index_dir):
        logger.warning("removing %s, left over by a publish of %s that did not finish", p, index_dir)
        shutil.rmtree(p, ignore_errors=True)


def recover(index_dir: Path) -> Path | None:
    """If no index is at ``index_dir`` but a crashed publish left complete versions beside it, rename the
    newest (highest generation) into place; returns the leftover restored, if any. The caller holds the lock.

    Only the two-rename fallback of :func:`~.files.swap_in` can leave the path empty; a staging directory
    counts as complete once its manifest is written, which is the last thing written.
    """
    if index_dir.exists():
        return None
    versions = []
    for p in leftovers(index_dir):
        try:
            versions.append((Manifest.read(p).generation, p))
        except (OSError, ValueError):
            continue  # incomplete: no manifest yet
    if not versions:
        return None
    _, newest = max(versions, key=lambda v: v[0])
    os.rename(newest, index_dir)
    fsync_dir(index_dir.parent)
    logger.warning("restored %s from %s, left by a publish that did not finish", index_dir, newest.name)
    return newest


def tidy_if_idle(index_dir: str | Path, *, clean: bool = True) -> bool:
    """For readers: :func:`tidy` (or only :func:`recover`, without ``clean``) if no writer holds the lock (one
    that does is at work, not crashed). Returns whether it could look.

    Cheap when there is nothing to do: a listing of the parent directory, and the lock only if it has leftovers.
    """
    path = Path(index_dir).resolve()
    if (path.exists() and not clean) or not leftovers(path):
        return False
    with index_lock(path, wait=False) as held:
        if held:
            if clean:
                tidy(path)
            else:
                recover(path)
        return held


def leftovers(index_dir: Path) -> list[Path]:
    """The publish temporaries beside ``index_dir`` (see :func:`~.layout.is_leftover`)."""
    parent = index_dir.parent
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if is_leftover(index_dir, p.name))


def _current(index_dir: Path, *, damaged_ok: bool) -> Manifest | None:
    """The manifest of the version at ``index_dir``; None when no index is there (a build of a new path), or
    when a build replaces one whose manifest does not read (``damaged_ok``)."""
    if not (index_dir / MANIFEST).is_file():
        return None
    try:
        return Manifest.read(index_dir)
    except ValueError as e:
        if not damaged_ok:
            raise
        logger.warning("replacing %s, whose manifest does not read: %s", index_dir, e)
        return None
