"""Checked, memory-mapped reads of the files every stage shares (parquet tables), below any stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
