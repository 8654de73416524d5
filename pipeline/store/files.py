"""File-system helpers for index directories: atomic directory swaps, the writer lock, hard-linked copies."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..core.io import current_umask
from .layout import lock_file, swap_prefix

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``out_dir`` only if the block succeeds.

    A failed build leaves any previous index untouched; a successful one swaps in with renames on
    the same filesystem, so readers see either the old directory or the new one.
    """
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=swap_prefix(out, "tmp"), dir=out.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; an index is shared like any directory
    try:
        yield tmp
        for f in tmp.iterdir():  # make new file contents durable before the rename publishes them
            if f.is_file() and f.stat().st_nlink == 1:  # hard links share an already published inode
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=swap_prefix(out, "old"), dir=out.parent))
            os.rmdir(old)
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def index_lock(index_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``index_dir`` (a sibling lock file): one writer at a time, none lost.

    The holder writes who it is into the lock file; a second writer logs that it waits and for whom (a
    silent wait on a long build looked like a hang). Readers need no lock: they see the old directory or the
    new one, whole (see :func:`atomic_directory`).
    """
    import fcntl

    path = Path(index_dir).resolve()
    lock = lock_file(path)
    with open(lock, "a+") as fh:  # not "w": that would erase the holder's name before we could read it
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            logger.warning("%s is locked by %s (%s); waiting for it to finish", path, holder, lock)
            t0 = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            logger.info("got the lock on %s after %.1f s", path, time.monotonic() - t0)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def link_tree(src: str | Path, dst: str | Path, skip: set[str] = frozenset()) -> None:
    """Hard-link (or copy, across filesystems) every file of ``src`` into ``dst``, recursively, except ``skip``.

    Index files are never modified in place, so sharing their inodes between the old and the new
    directory is safe and costs no copy of the vectors.
    """
    for f in Path(src).iterdir():
        if f.name in skip:
            continue
        if f.is_dir():
            (Path(dst) / f.name).mkdir(exist_ok=True)
            link_tree(f, Path(dst) / f.name)
            continue
        try:
            os.link(f, Path(dst) / f.name)
        except OSError:
            shutil.copy2(f, Path(dst) / f.name)

