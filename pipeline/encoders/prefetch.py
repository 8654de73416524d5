"""Decoding beside an ONNX Runtime forward on few cores: one prefetch thread, and a numpy tail to the transform.

Why: on two cores, DataLoader worker processes preempt ORT's threads (0.54x bare ORT), and decoding between
forwards leaves the forward idle meanwhile (about 0.8x). A thread that decodes the next batch while ORT runs
this one fills the gaps of ORT's parallel operators instead; PIL and numpy release the GIL. The tensor tail of
the usual transform (``ToTensor`` then ``Normalize``) is redone in numpy, the same float32 operations in the
same order, so the batches are bit-identical while no torch op runs (and spins up torch's thread pool) per
image. Measured side by side in ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..core.progress import encode_desc
from ..data.images import load_image
from .base import fill_rows

PREFETCH = 2  # batches decoded ahead of the forward: one in flight, one ready


Transform = Callable[[Any, "np.ndarray | None"], np.ndarray]  # (PIL image, out) -> float32 CHW array


def numpy_transform(transform: Any) -> Transform:
    """``transform`` as a function from a PIL image to a float32 CHW array, written into ``out`` when given.

    A torchvision ``Compose`` that ends in ``ToTensor`` (or a subclass, such as timm's) and ``Normalize`` keeps
    its PIL steps and gets a numpy tail; any other transform runs as it is and is converted afterwards.
    """
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or not (isinstance(steps[-2], T.ToTensor) and isinstance(steps[-1], T.Normalize)):
        return lambda img, out=None: _into(out, np.asarray(transform(img), dtype=np.float32))
    head, norm = steps[:-2], steps[-1]
    mean = np.asarray(norm.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(norm.std, dtype=np.float32).reshape(-1, 1, 1)

    def apply(img: Any, out: np.ndarray | None = None) -> np.ndarray:
        for step in head:
            img = step(img)
        x = np.asarray(img, dtype=np.uint8)  # as ToTensor reads a PIL image: HWC, one channel as HW1
        x = _into(out, (x[:, :, None] if x.ndim == 2 else x).transpose(2, 0, 1))  # CHW, as float32
        # ToTensor's / 255, then Normalize, in place: the same float32 operations as torchvision's. Temporaries
        # would cost more than the arithmetic: each is a fresh 600 kB allocation that glibc maps and faults in
        # anew (benchmarks/README.md).
        np.divide(x, np.float32(255), out=x)
        np.subtract(x, mean, out=x)
        np.divide(x, std, out=x)
        return x

    return apply


def _into(out: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """``x`` as float32, copied into ``out`` when given (a slot of the batch), else into a new array."""
    if out is None:
        return np.array(x, dtype=np.float32, order="C")
    if x.shape != out.shape:  # copyto would broadcast a (1, 1, 1) result over the slot without a word
        raise ValueError(f"the transform gave an array of shape {x.shape}, but the batch's first image gave "
                         f"{out.shape}; every image must come out the same size")
    np.copyto(out, x)
    return out


def prefetched_batches(
    items: Sequence[Any], ids: Sequence[str] | None, transform: Transform, batch_size: int
) -> Iterator[np.ndarray]:
    """(b, C, H, W) float32 batches of ``items``, decoded one batch ahead in a background thread.

    The thread runs at the lowest CPU priority where the platform allows it (Linux), so that it decodes in
    the gaps between the forward's parallel operators rather than preempting one of its threads.
    A bad image raises here, in the caller's thread, with the error that names its item; a consumer that stops
    early stops the thread at its next batch.
    """
    done = object()
    ready: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def decode(i: int, out: np.ndarray | None = None) -> np.ndarray:
        item = ids[i] if ids is not None else f"#{i}"
        img = load_image(items[i], item=item)
        try:
            return transform(img, out)
        except ValueError as e:
            raise ValueError(f"item {item!r}: {e}") from e

    def produce() -> None:
        try:
            _lower_priority()
            for rows in (range(i, min(i + batch_size, len(items))) for i in range(0, len(items), batch_size)):
                if stop.is_set():
                    return
                first = decode(rows[0])
                batch = np.empty((len(rows), *first.shape), dtype=np.float32)
                batch[0] = first
                for k in range(1, len(rows)):
                    decode(rows[k], batch[k])
                ready.put(batch)
            ready.put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            ready.put(e)

    thread = threading.Thread(target=produce, name="relspace-decode", daemon=True)
    thread.start()
    try:
        while (batch := ready.get()) is not done:
            if isinstance(batch, BaseException):
                raise batch
            yield batch
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then let it see ``stop``
            try:
                ready.get_nowait()
            except queue.Empty:
                thread.join(0.01)


def _lower_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19), on Linux, where niceness is per thread.

    Elsewhere ``setpriority`` would renice the whole process, so it is left alone.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def encode_ahead(
    enc: Any, items: Sequence[Any], ids: Sequence[str] | None, batch_size: int, show_progress: bool | None
) -> np.ndarray:
    """``enc.forward`` on every batch of ``items`` while the next one decodes: (n, enc.dim) float32."""
    batches = prefetched_batches(items, ids, numpy_transform(enc.transform), batch_size)
    return fill_rows((enc.forward(b) for b in batches), len(items), enc.dim,
                     desc=encode_desc("image", enc.spec), show_progress=show_progress)
