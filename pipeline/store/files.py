"""File-system helpers for index directories: atomic directory exchanges, the writer lock, hard-linked copies."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..core.io import current_umask
from .layout import lock_file, swap_prefix

logger = logging.getLogger(__name__)


AT_FDCWD = -100  # <fcntl.h>: paths relative to the working directory
RENAME_EXCHANGE = 2  # <linux/fs.h>: swap the two names atomically; both must exist


def _renameat2() -> Any:
    """libc's ``renameat2`` (glibc >= 2.28), or None where there is none (another OS, an older libc)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one atomic step (Linux ``renameat2(..., RENAME_EXCHANGE)``).

    Returns False where the exchange is not available (no ``renameat2``, a kernel or filesystem that refuses
    the flag): the caller falls back to two renames. Any other failure is raised, naming both paths.
    """
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # old kernel, or a filesystem without it
        logger.debug("renameat2(RENAME_EXCHANGE) unavailable for %s (%s)", b, os.strerror(err))
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def make_staging(out: Path) -> Path:
    """A new, empty sibling of ``out`` to write its next version in (same filesystem, so a rename publishes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=swap_prefix(out, "tmp"), dir=out.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700; an index is shared like any directory
    return tmp


def swap_in(tmp: Path, out: Path, *, allow_exchange: bool = True,
            between: Callable[[], None] | None = None) -> Path | None:
    """Make ``tmp`` the directory at ``out``; returns where the replaced version now is (None if there was none).

    With an existing ``out`` the two are exchanged atomically, so ``out`` names a complete directory at every
    instant and the old version ends at ``tmp``'s name. Without ``renameat2`` (or ``allow_exchange=False``) the
    old version is renamed away first and ``tmp`` renamed in after (``between`` runs in that window): a crash
    there leaves no directory at ``out``, and :func:`pipeline.store.publish.recover` restores the newest one.
    """
    if not out.exists():
        os.rename(tmp, out)
        return None
    if allow_exchange and exchange(tmp, out):
        return tmp
    old = Path(tempfile.mkdtemp(prefix=swap_prefix(out, "old"), dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    if between is not None:
        between()
    os.rename(tmp, out)
    return old


def fsync_tree(root: Path) -> None:
    """Make the new files under ``root`` durable, and the directories naming them; hard-linked files (shared
    with a published version, ``st_nlink`` > 1) already are."""
    for d, _, names in os.walk(root):
        for name in names:
            f = Path(d) / name
            if f.stat().st_nlink == 1:
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(Path(d))


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename into or out of it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``out_dir`` only if the block succeeds.

    A failed block leaves the previous directory untouched; a successful one is swapped in with
    :func:`swap_in`. Index directories publish through :func:`pipeline.store.publish.commit` instead, which
    adds the writer lock, the generation check and recovery.
    """
    out = Path(out_dir).resolve()
    tmp = make_staging(out)
    try:
        yield tmp
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = swap_in(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def index_lock(index_dir: str | Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``index_dir`` (a sibling lock file): one writer at a time, none lost.

    The holder writes who it is into the lock file; a second writer logs that it waits and for whom (a
    silent wait on a long build looked like a hang). Readers need no lock: the index path names a whole
    version at every instant (see :func:`swap_in`). With ``wait=False`` a held lock is not waited for: the
    block runs without it and gets False (a reader tidying up after a crashed writer only when none is at work).
    """
    import fcntl

    path = Path(index_dir).resolve()
    lock = lock_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:  # not "w": that would erase the holder's name before we could read it
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
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
            yield True
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

