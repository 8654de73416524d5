"""Encoder registry and real encoders: open_clip from a tiny random config and a checkpoint, bundled MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.encoders import create_encoder, list_encoders, resolve_spec

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Register a tiny open_clip architecture and write a checkpoint of its (seeded random) weights."""
    import open_clip
    import torch

    d = tmp_path_factory.mktemp("clip")
    (d / "relspace-tiny.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(d / "relspace-tiny.json")
    torch.manual_seed(0)
    model = open_clip.create_model("relspace-tiny")
    ckpt = d / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    return "relspace-tiny", ckpt


def images() -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]


def test_open_clip_checkpoint_both_towers(tiny_clip: tuple[str, Path]) -> None:
    import open_clip
    import torch

    arch, ckpt = tiny_clip
    text = create_encoder(f"open_clip:{arch}/{ckpt}", "text", "cpu")
    image = create_encoder(f"open_clip:{arch}/{ckpt}", "image", "cpu")
    assert text.dim == image.dim == 32 and text.modality == "text" and image.modality == "image"
    t = text.encode(["a red square", "a dog"])
    i = image.encode(images())
    assert t.shape == (2, 32) and i.shape == (3, 32) and t.dtype == np.float32
    # the checkpoint really is what was loaded: compare with the model's own forward
    model, _, pre = open_clip.create_model_and_transforms(arch)
    model.load_state_dict(torch.load(ckpt, weights_only=True))
    model.eval()
    with torch.no_grad():
        ref_t = model.encode_text(open_clip.get_tokenizer(arch)(["a red square", "a dog"])).numpy()
        ref_i = model.encode_image(torch.stack([pre(im) for im in images()])).numpy()
    np.testing.assert_allclose(t, ref_t, atol=1e-5)
    np.testing.assert_allclose(i, ref_i, atol=1e-5)


def test_open_clip_random_weights_warn(tiny_clip: tuple[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    enc = create_encoder(f"open_clip:{tiny_clip[0]}", "image", "cpu")
    assert "random" in caplog.text and enc.encode(images()).shape == (3, 32)


def test_open_clip_missing_checkpoint(tiny_clip: tuple[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        create_encoder(f"open_clip:{tiny_clip[0]}/{tmp_path}/nope.pt", "text", "cpu")


def test_image_encoder_uses_dataloader_workers(tiny_clip: tuple[str, Path], tmp_path: Path) -> None:
    """Past the worker threshold, decoding runs in worker processes and gives the same vectors."""
    enc = create_encoder(f"open_clip:{tiny_clip[0]}/{tiny_clip[1]}", "image", "cpu")
    paths = []
    for n in range(70):
        p = tmp_path / f"{n}.png"
        Image.new("RGB", (20, 20), (n * 3, 255 - n * 3, 7)).save(p)
        paths.append(str(p))
    enc.num_workers = 2
    with_workers = enc.encode(paths, batch_size=16)
    enc.num_workers = 0
    np.testing.assert_allclose(with_workers, enc.encode(paths, batch_size=16), atol=1e-6)


def test_bundled_minilm() -> None:
    enc = create_encoder("minilm", "text", "cpu")
    v = enc.encode(["a red apple", "an apple", "a rocket to the moon"])
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert enc.dim == 384 and v.shape == (3, 384)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # a real sentence model, not noise
    with pytest.raises(ValueError, match="'#1'.*non-empty"):
        enc.encode(["ok", "  "])
    with pytest.raises(ValueError, match="'b'"):
        enc.encode(["ok", ""], ids=["a", "b"])


def test_registry_errors() -> None:
    listed = list_encoders()
    assert {"st", "open_clip", "timm"} <= set(listed["schemes"]) and "minilm" in listed["aliases"]
    with pytest.raises(ValueError, match="unknown encoder 'nope:x'.*st:"):
        create_encoder("nope:x", "text")
    with pytest.raises(ValueError, match="embeds text, not image"):
        create_encoder("minilm", "image")
    with pytest.raises(ValueError, match="unknown modality"):
        create_encoder("minilm", "audio")
    assert resolve_spec("minilm").startswith("st:") and resolve_spec("st:x") == "st:x"


def test_an_encoder_pickles_as_its_recipe_not_its_weights() -> None:
    """What a Ray worker receives: a few hundred bytes that load the same model again, embedding alike."""
    import pickle

    enc = create_encoder("minilm", "text", "cpu")
    blob = pickle.dumps(enc)
    assert len(blob) < 2_000  # the spec and options, not 90 MB of weights
    copy = pickle.loads(blob)
    assert copy is not enc and copy.spec == enc.spec and copy.dim == enc.dim
    texts = ["a red apple", "un cohete"]
    assert np.allclose(copy.encode(texts), enc.encode(texts), atol=1e-6)
