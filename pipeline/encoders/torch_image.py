"""Shared batching for image towers: decode and transform in DataLoader workers, forward in the main process.

The forward is torch here; ``onnx_image`` swaps it for ONNX Runtime, and ``IMAGE_BACKENDS`` names the choice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.progress import encode_desc
from ..core.registry import Registry
from ..data.images import ImageLoadError, load_image
from .base import Encoder, fill_rows

logger = logging.getLogger(__name__)

# Below this many images, worker start-up costs more than it saves.
MIN_ITEMS_FOR_WORKERS = 64
# With workers, the first batch is this small: the forward waits for the first batch's decode, which
# nothing overlaps (the "pipeline fill" of benchmarks/README.md), so a small one starts the forward sooner.
FIRST_BATCH = 16


def default_num_workers() -> int:
    """Leave one core to the forward pass; decoding gets the rest."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class _Failed(str):
    """A worker's error message, passed back as data: raised in a worker, torch would wrap the one-line
    error naming the item in a 30-line "Caught ImageLoadError in DataLoader worker process 0" traceback."""


class _ImageDataset:
    """Map-style dataset: item i -> transformed tensor, decoded in whichever worker asks."""

    def __init__(self, items: Sequence[Any], ids: Sequence[str] | None, transform: Callable[[Any], Any]):
        self.items, self.ids, self.transform = items, ids, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        item = self.ids[i] if self.ids is not None else f"#{i}"
        try:
            return self.transform(load_image(self.items[i], item=item))
        except ImageLoadError as e:
            return _Failed(str(e))


def _collate(batch: list[Any]) -> Any:
    """Stack a batch of tensors, or hand back the first failure to be raised in the main process."""
    from torch.utils.data import default_collate

    failed = next((x for x in batch if isinstance(x, _Failed)), None)
    return failed if failed is not None else default_collate(batch)


def _checked(batch: Any) -> Any:
    """A collated batch, or the worker's failure raised here with its one-line message naming the item."""
    if isinstance(batch, _Failed):
        raise ImageLoadError(str(batch))
    return batch


class TorchImageEncoder(Encoder):
    """An image encoder from a torch ``forward`` (batch -> features) and its preprocessing ``transform``."""

    modality = "image"

    def __init__(
        self,
        spec: str,
        forward: Callable[[Any], Any],
        transform: Callable[[Any], Any],
        dim: int,
        version: str,
        device: str,
        num_workers: int | None = None,
    ):
        self.spec, self._forward, self.transform = spec, forward, transform
        self._dim, self._version, self.device = dim, version, device
        self.num_workers = default_num_workers() if num_workers is None else num_workers

    backend = "torch"  # what runs the forward; the vectors are the same whichever it is

    def forward(self, batch: Any) -> np.ndarray:
        """The model forward on a preprocessed batch (also what benchmarks compare against)."""
        import torch

        with torch.inference_mode():
            out = self._forward(batch.to(self.device, non_blocking=True))
        return out.float().cpu().numpy()

    def encode(
        self,
        items: Sequence[Any],
        *,
        batch_size: int = 64,
        show_progress: bool | None = None,
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        from torch.utils.data import DataLoader

        if len(items) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        workers = self.num_workers if len(items) >= MIN_ITEMS_FOR_WORKERS else 0
        loader = DataLoader(
            _ImageDataset(items, ids, self.transform),
            batch_sampler=batches(len(items), batch_size, FIRST_BATCH if workers else batch_size),
            num_workers=workers,
            pin_memory=self.device.startswith("cuda"),
            persistent_workers=False,
            collate_fn=_collate,
        )
        return fill_rows((self.forward(_checked(batch)) for batch in loader), len(items), self.dim,
                         desc=encode_desc("image", self.spec), show_progress=show_progress)


def batches(n: int, batch_size: int, first: int) -> list[range]:
    """Index batches of ``batch_size`` after a first one of at most ``first`` items."""
    head = min(first, batch_size, n)
    return [range(0, head)] + [range(i, min(i + batch_size, n)) for i in range(head, n, batch_size)]


# How an image tower's forward runs: name -> (torch encoder) -> encoder. "torch" keeps it; ``onnx_image``
# registers "onnx" and "auto". Equal vectors either way, so an index built with one is queried with another.
ImageBackend = Callable[[TorchImageEncoder, "str | None"], Encoder]  # (encoder, cache root) -> encoder
IMAGE_BACKENDS: Registry[ImageBackend] = Registry("image backend")


@IMAGE_BACKENDS.register("torch")
def _torch_backend(enc: TorchImageEncoder, cache_dir: str | None) -> Encoder:
    return enc
