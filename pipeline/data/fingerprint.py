"""Content keys: what a cache or a resumed shard is keyed by, computed from the data itself.

Each key covers what determines a derived file's contents and nothing else: the embedding cache is keyed by
the one column it embeds (an image's bytes, or its path with size and mtime; the caption strings), so a
changed caption column or a new label column never throws away image embeddings; a shard is keyed by every
column it stores. Nothing here reads 🤗 datasets' private fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

# Rows hashed per Arrow batch when keying a whole dataset: bounds the memory of one pass.
BATCH_ROWS = 1024


def _image_part(value: Any) -> bytes:
    """One image's identity: its bytes, or its path with size and mtime (a replaced file is another image)."""
    if isinstance(value, dict):  # a 🤗 Image feature read undecoded: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b"b" + bytes(value)
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        try:
            st = os.stat(path)
            return f"p{path}\x00{st.st_size}\x00{st.st_mtime_ns}".encode()
        except OSError:
            return f"p{path}\x00missing".encode()
    return f"v{value!r}".encode()


def _update(h: Any, parts: Iterable[bytes]) -> None:
    for part in parts:  # length-prefixed, so no two sequences of parts hash alike
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)


def image_key(images: Sequence[Any]) -> str:
    """The content key of a column of images (bytes, paths or undecoded 🤗 ``Image`` values), in order."""
    h = hashlib.blake2b(b"images", digest_size=20)
    _update(h, (_image_part(v) for v in images))
    return h.hexdigest()


def text_key(texts: Sequence[str]) -> str:
    """The content key of a list of strings (the caption rows an encoder embeds), in order."""
    h = hashlib.blake2b(b"texts", digest_size=20)
    _update(h, (t.encode("utf-8", "surrogatepass") for t in texts))
    return h.hexdigest()


def dataset_key(ds: Any) -> str:
    """The content key of every row of a dataset (the ``image`` column as :func:`image_key` reads it, the
    others as Arrow data), streamed a batch at a time: what a shard made from these rows depends on."""
    import pyarrow as pa

    h = hashlib.blake2b(b"rows", digest_size=20)
    h.update(",".join(ds.column_names).encode())
    for batch in ds.with_format("arrow").iter(batch_size=BATCH_ROWS):
        if "image" in batch.column_names:
            h.update(image_key(batch.column("image").to_pylist()).encode())
            batch = batch.drop_columns(["image"])
        batch = batch.combine_chunks()  # equal rows hash alike however 🤗 datasets chunked them
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:  # IPC writes a slice's own values only
            writer.write_table(batch, max_chunksize=BATCH_ROWS)
        h.update(sink.getvalue())
    return h.hexdigest()
