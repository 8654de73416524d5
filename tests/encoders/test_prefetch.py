"""Decoding a batch ahead of the ONNX Runtime forward: the numpy transform equals torch's bit for bit, a bad
image is named from the decoding thread, and both decoding paths of the ORT encoder give the same vectors."""

from __future__ import annotations

import io
import os
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from pipeline.config import Config
from pipeline.data import load_data
from pipeline.data.images import ImageLoadError, load_image
from pipeline.encoders import create_encoder
from pipeline.encoders.prefetch import numpy_transform, prefetched_batches


@pytest.fixture(scope="module")
def pngs(small_config: Config) -> list[bytes]:
    return list(load_data(small_config.data)["image"][:40])


def _png(mode: str, size: tuple[int, int] = (50, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("arch", ["timm", "open_clip"])
def test_the_numpy_tail_equals_the_torch_transform_bit_for_bit(arch: str, pngs: list[bytes]) -> None:
    if arch == "timm":
        transform = create_encoder("efficientnet-lite0", "image", "cpu", image_backend="torch").transform
    else:  # open_clip's preprocessing: Resize, CenterCrop, a convert-to-RGB function, ToTensor, Normalize
        import open_clip

        transform = open_clip.image_transform(64, is_train=False)
    fast = numpy_transform(transform)
    batch = np.full((2, *transform(load_image(pngs[0])).shape), np.nan, dtype=np.float32)
    for png in [*pngs[:8], _png("L"), _png("RGBA", (30, 70))]:
        img = load_image(png)
        want = transform(img).numpy()
        np.testing.assert_array_equal(fast(img), want)
        assert fast(img).flags.c_contiguous  # ORT reads the batch as it is
        np.testing.assert_array_equal(fast(img, batch[1]), want)  # written in place into a batch's slot
        np.testing.assert_array_equal(batch[1], want)
    assert np.isnan(batch[0]).all()  # and nowhere else


def test_any_other_transform_runs_as_it_is() -> None:
    fast = numpy_transform(lambda img: np.zeros((3, 2, 2)) + img.size[0])
    assert fast(Image.new("RGB", (5, 5))).dtype == np.float32 and fast(Image.new("RGB", (5, 5)))[0, 0, 0] == 5
    out = np.zeros((3, 2, 2), dtype=np.float32)
    assert fast(Image.new("RGB", (7, 7)), out) is out and (out == 7).all()


def test_an_image_that_comes_out_another_size_is_named_not_broadcast(pngs: list[bytes]) -> None:
    sizes = iter([(3, 4, 4), (3, 4, 4), (1, 1, 1), (3, 4, 4)])  # the third would broadcast into its slot
    fast = numpy_transform(lambda img: np.ones(next(sizes)))
    batches = prefetched_batches(pngs[:4], [f"emoji-{i}" for i in range(4)], fast, 4)
    with pytest.raises(ValueError, match=r"item 'emoji-2'.*\(1, 1, 1\).*same size"):
        next(batches)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_the_decoding_thread_yields_the_cpu_to_the_forward(pngs: list[bytes]) -> None:
    seen: list[int] = []
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def transform(img: Image.Image, out: np.ndarray | None = None) -> np.ndarray:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return np.zeros((3, 4, 4), dtype=np.float32)

    assert len(list(prefetched_batches(pngs[:6], None, transform, 4))) == 2
    assert seen == [19] * 6  # the lowest priority, in the decoding thread only
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_a_bad_image_is_named_from_the_decoding_thread(pngs: list[bytes]) -> None:
    items = [*pngs[:5], b"not an image", *pngs[5:9]]
    ids = [f"emoji-{i}" for i in range(len(items))]
    batches = prefetched_batches(items, ids, numpy_transform(lambda img: np.zeros((3, 4, 4))), 4)
    assert next(batches).shape == (4, 3, 4, 4)
    with pytest.raises(ImageLoadError, match="emoji-5"):
        next(batches)


def test_a_consumer_that_stops_early_stops_the_thread(pngs: list[bytes]) -> None:
    before = {t for t in threading.enumerate() if t.name == "relspace-decode"}
    batches = prefetched_batches(pngs * 5, None, numpy_transform(lambda img: np.zeros((3, 4, 4))), 2)
    next(batches)
    batches.close()  # what a `break` out of the loop does
    assert {t for t in threading.enumerate() if t.name == "relspace-decode"} == before


def test_the_thread_and_the_dataloader_give_the_same_vectors(pngs: list[bytes], tmp_path) -> None:
    enc = create_encoder("efficientnet-lite0", "image", "cpu", image_backend="onnx", cache_dir=str(tmp_path))
    enc.num_workers = 0  # decoding a batch ahead in a thread
    ahead = enc.encode(pngs, batch_size=16)
    enc.num_workers = 1  # DataLoader workers
    np.testing.assert_array_equal(ahead, enc.encode(pngs, batch_size=16))
    assert ahead.shape == (40, 1280) and not np.allclose(ahead[0], ahead[1])
