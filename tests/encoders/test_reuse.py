"""The build's vector table: an item embedded once is looked up afterwards, and gets the bits it would have had."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import Config
from pipeline.data import captions, load_data
from pipeline.encoders import Encoder, make_encoder
from pipeline.encoders.reuse import ReusingEncoder, VectorTable, content_key


@pytest.fixture(scope="module")
def data(small_config: Config) -> tuple[list[bytes], list[str]]:
    ds = load_data(small_config.data)
    texts = [c for caps in captions(ds, "en") for c in caps]
    return list(ds["image"])[:48], texts[:160]


@pytest.fixture(scope="module")
def bundled(small_config: Config) -> dict[str, Encoder]:
    return {m: make_encoder(small_config, m) for m in ("text", "image")}  # type: ignore[arg-type]


@pytest.mark.parametrize("modality", ["text", "image"])
def test_batch_invariant_says_whether_an_item_gets_the_same_bits_in_any_batch(
    modality: str, bundled: dict[str, Encoder], data: tuple[list[bytes], list[str]]
) -> None:
    """The premise of reuse: the anchor phase embeds an item in other batches than the shards would."""
    items = data[1] if modality == "text" else data[0]
    enc = bundled[modality]
    whole = enc.encode(items, batch_size=64)
    same = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(items))[: len(items) * 2 // 3]
        same.append(np.array_equal(enc.encode([items[i] for i in order], batch_size=[7, 64, 16][seed]), whole[order]))
    if enc.batch_invariant:
        assert all(same)
    else:  # the bundled MiniLM is not, which is why captions are embedded again (its flag must stay False)
        assert modality == "text" and not all(same)


def test_reusing_encoder_encodes_only_unseen_items(bundled: dict[str, Encoder], data: tuple[list[bytes], list[str]]):
    images, texts = data
    table = VectorTable()
    pics = ReusingEncoder(bundled["image"], table)
    assert (pics.spec, pics.dim, pics.version, pics.blocks) == (bundled["image"].spec, bundled["image"].dim,
                                                              bundled["image"].version, bundled["image"].blocks)
    first = pics.encode(images[:20], batch_size=8)
    assert table.reused == 0 and len(table) == 20
    table.freeze()
    both = pics.encode(images[10:30], batch_size=16)
    assert table.reused == 10  # images[10:20] came from the table
    assert np.array_equal(both, bundled["image"].encode(images[10:30])) and np.array_equal(both[:10], first[10:])
    assert len(table) == 20  # frozen: the other 10 were encoded, not kept

    table.recording = True
    words = ReusingEncoder(bundled["text"], table)
    words.encode(texts[:5])
    assert np.array_equal(words.encode(texts[:5]), bundled["text"].encode(texts[:5]))
    assert table.reused == 10 and len(table) == 20  # a caption encoder that is not batch-invariant is never reused


def test_content_key_tells_contents_apart_not_ids() -> None:
    from PIL import Image

    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    assert content_key(red) == content_key(Image.new("RGB", (8, 8), "red")) != content_key(blue)
    assert content_key(b"png") == content_key({"bytes": b"png", "path": "a.png"}) != content_key(b"gif")
    assert content_key({"bytes": None, "path": "a.png"}) == content_key("a.png") != content_key("b.png")
    assert content_key(3) is None
