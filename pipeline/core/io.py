"""File I/O every stage shares, below any stage: atomic file writes and checked, memory-mapped parquet reads."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it becomes ``path``, whole, in one rename.

    The caller writes the temporary file by any means (``np.save``, ``pq.write_table``, an exporter). It is
    then fsynced and ``os.replace``d onto ``path``, so a concurrent reader or a crash sees the old file or the
    new one, never half of one; if the block fails, the temporary is removed and ``path`` is untouched. The
    temporary is hidden, in the same directory (a rename across filesystems is not atomic), and keeps the
    suffix of ``path`` (``np.save`` appends ``.npy`` to any other name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.chmod(0o666 & ~current_umask())  # mkstemp makes it 0600; the file is shared like any other
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def map_file(path: str | Path) -> Any:
    """A file's bytes, memory-mapped now (a ``pyarrow.Buffer``); nothing is read until used.

    The mapping keeps this inode: after an update replaces the directory, a reader holding it still sees the
    version it opened, never the file that now has the name (Linux keeps unlinked mapped files readable).
    """
    import pyarrow as pa

    with pa.memory_map(str(path)) as f:
        return f.read_buffer()  # the buffer keeps the mapping alive after the file object closes


def read_parquet(path: str | Path, what: str, *, data: Any = None) -> Any:
    """Read a parquet table, refusing a missing or damaged file in one line that names ``what`` and the file.

    pyarrow's own errors (ArrowInvalid: "Parquet magic bytes not found in footer") say neither which
    table it was nor what to do; a half-copied index is the usual cause.

    Args:
        path: the parquet file.
        what: how the message names it, e.g. "image item table".
        data: the file's bytes already mapped by :func:`map_file`; read instead of ``path``, which names it.

    Returns:
        A ``pyarrow.Table``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is truncated or not parquet.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if data is None and not Path(path).is_file():
        raise FileNotFoundError(f"{what} missing: {path}")
    try:
        return pq.read_table(pa.BufferReader(data) if data is not None else str(path), memory_map=True)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{what} {path} is damaged (truncated or not a parquet file)") from e
