"""The ONNX Runtime backend of torch image towers: export once to the cache, then run the graph on CPU.

Why: on 2 shared CPU cores, encoding with ONNX Runtime ran 3.6-4.9x faster than with torch, decoding included
(benchmarks/README.md, "ONNX Runtime backend"). The vectors equal torch's within ``TOLERANCE`` (1.7e-05
measured), which is checked whenever a session is made, so the backend is not part of an encoder's identity:
its ``spec`` and ``version`` stay the torch encoder's, and an index built with one backend is queried with the
other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.io import atomic_write
from .base import Encoder
from .prefetch import encode_ahead
from .torch_image import IMAGE_BACKENDS, TorchImageEncoder, default_num_workers

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

OPSET = 17  # ONNX opset of the export; part of the cache key
TOLERANCE = 1e-4  # largest |ORT - torch| allowed on the probe batch, relative to max(1, max |torch|)
_EXPORT_FORMAT = 1  # bump when the export's graph changes (names, axes), to invalidate cached files
KEEP_PER_ARCH = 4  # exports kept per scheme and architecture; older ones (other weights) are deleted
_INPUT, _OUTPUT = "pixels", "features"


class OnnxExportError(RuntimeError):
    """The model could not be exported to ONNX, or the exported graph does not reproduce torch's vectors."""


class OnnxImageEncoder(TorchImageEncoder):
    """A torch image tower whose forward runs an ONNX Runtime session; decoding runs in DataLoader workers, or on
    two cores or fewer in one thread a batch ahead (:mod:`.prefetch`)."""

    backend = "onnx"
    batch_invariant = True  # an item's bits do not depend on its batch: tests/encoders/test_reuse.py checks it

    def __init__(self, enc: TorchImageEncoder, session: Any, model_path: Path):
        super().__init__(enc.spec, _no_torch_forward, enc.transform, enc.dim, enc.version, "cpu", onnx_num_workers())
        self.session, self.model_path = session, model_path  # public: benchmarks time the same file bare

    def forward(self, batch: Any) -> np.ndarray:
        """The ONNX graph on a preprocessed batch (a torch tensor from the DataLoader, or an array)."""
        x = batch.numpy() if hasattr(batch, "numpy") else np.asarray(batch)
        return self.session.run([_OUTPUT], {_INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def encode(
        self,
        items: Sequence[Any],
        *,
        batch_size: int = 64,
        show_progress: bool | None = None,
        ids: Sequence[str] | None = None,
    ) -> np.ndarray:
        """With no decoding workers (two cores or fewer), decode in a thread one batch ahead of the forward."""
        if self.num_workers or len(items) == 0:
            return super().encode(items, batch_size=batch_size, show_progress=show_progress, ids=ids)
        return encode_ahead(self, items, ids, batch_size, show_progress)


def onnx_num_workers() -> int:
    """Decoding workers beside an ORT forward: none on two cores or fewer, else as for torch.

    ORT runs every operator on all the cores; on two, a decoding worker preempts one of its two threads and
    stalls each parallel op. Measured side by side at load 1.4 (benchmarks/README.md): 0.54x bare ORT with one
    worker, 0.79x decoding in-process between forwards. A config's ``num_workers`` still overrides this.
    """
    return 0 if _cores() <= 2 else default_num_workers()


def _no_torch_forward(batch: Any) -> Any:
    raise RuntimeError("an ONNX image encoder has no torch forward")


@IMAGE_BACKENDS.register("onnx")
def onnx_backend(enc: TorchImageEncoder, cache_dir: str | None) -> Encoder:
    """The ONNX Runtime encoder on CPU; falls back to ``enc`` (torch), with a warning, if the export fails.

    The export goes under the data cache's root (``cache_dir``, else ``$RELSPACE_CACHE``, else
    ``~/.cache/relspace``), by the one rule in ``pipeline.data``; imported here, since it loads ``datasets``.
    """
    from ..config import DataConfig
    from ..data.base import cache_dir as cache_root

    if enc.device != "cpu":
        raise ValueError(f"image backend 'onnx' runs on CPU, but the device is {enc.device!r}; use 'torch' or 'auto'")
    try:
        return OnnxImageEncoder(enc, *cached_session(enc, cache_root(DataConfig(cache_dir=cache_dir))))
    except (OnnxExportError, OSError) as e:  # OSError: a read-only or full cache; torch still works
        logger.warning("%s: ONNX export failed, running torch instead: %s", enc.spec, e)
        return enc


@IMAGE_BACKENDS.register("auto")
def auto_backend(enc: TorchImageEncoder, cache_dir: str | None) -> Encoder:
    """ONNX Runtime on CPU (faster, same vectors), torch on CUDA (onnxruntime here has no CUDA provider)."""
    return onnx_backend(enc, cache_dir) if enc.device == "cpu" else enc


def cached_session(enc: TorchImageEncoder, cache_root: Path) -> tuple[Any, Path]:
    """An ORT session of ``enc``'s model, exported to ``cache_root/onnx`` on first use and checked each time.

    A cached file that is damaged (its sha256 differs from the sidecar's), that ORT cannot load, or whose
    output differs from torch's on the probe batch is exported again; a failed export raises
    :class:`OnnxExportError`.
    """
    model = _module(enc)
    probe = _probe_batch(enc)
    path = cache_root / "onnx" / f"{_slug(enc)}-{_cache_key(enc, model, probe)}.onnx"
    if path.is_file():
        try:
            session = _checked_session(path, model, probe)
            logger.debug("reusing ONNX export %s", path)
            return session, path
        except OnnxExportError as e:
            logger.warning("cached ONNX model %s is unusable (%s); exporting it again", path, e)
    export(model, probe, path)
    return _checked_session(path, model, probe), path


def export(model: nn.Module, probe: Any, path: Path) -> None:
    """Export ``model`` to ``path`` with a dynamic batch axis, atomically, with a sidecar of its sha256.

    Written to a temporary file in the same directory and renamed, so that a concurrent reader or a crash
    never sees half a file.
    """
    import torch

    logger.info("exporting %s to ONNX (%s); later loads reuse it", type(model).__name__, path)
    with atomic_write(path) as tmp:
        try:
            # the TorchScript exporter: the newer torch.export one needs onnxscript, and warns it is deprecated
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (probe,), str(tmp), dynamo=False, opset_version=OPSET, input_names=[_INPUT],
                                  output_names=[_OUTPUT], dynamic_axes={_INPUT: {0: "n"}, _OUTPUT: {0: "n"}})
        except Exception as e:  # the exporter raises many types (unsupported ops, tracing errors)
            raise OnnxExportError(f"{type(e).__name__}: {e}") from e
        meta = {"sha256": _sha256(tmp), "opset": OPSET, "torch": torch.__version__}
    with atomic_write(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    _prune(path)


def _prune(path: Path) -> None:
    """Delete all but the newest KEEP_PER_ARCH exports of ``path``'s architecture, so that models with
    ever-new weights (random ones, retrained checkpoints) do not fill the cache."""
    stem = path.stem.rsplit("-", 1)[0]
    with contextlib.suppress(OSError):  # another process pruning at the same time; the next export retries
        old = sorted(path.parent.glob(f"{stem}-*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
        for p in old[KEEP_PER_ARCH:]:
            p.unlink(missing_ok=True)
            p.with_suffix(".json").unlink(missing_ok=True)


def session_options() -> Any:
    """ORT options: intra-op threads = the cores this process may use; no spinning between calls."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _cores()
    opts.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning, which leaves the cores to the DataLoader's decoding worker
    # and to other tenants: bare batch-64 runs were 1.12-1.13x faster without spinning at load 5-7
    # (benchmarks/README.md, "ONNX Runtime backend").
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _checked_session(path: Path, model: nn.Module, probe: Any) -> Any:
    """Load ``path`` after checking its sha256, and check its output against torch's on ``probe``."""
    import onnxruntime as ort
    import torch

    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as e:
        raise OnnxExportError(f"no readable sidecar {path.with_suffix('.json').name}: {e}") from None
    if meta.get("sha256") != _sha256(path):
        raise OnnxExportError("its sha256 differs from the one recorded at export")
    try:
        session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
        got = session.run([_OUTPUT], {_INPUT: probe.numpy()})[0]
    except Exception as e:  # ORT's own exception types (InvalidGraph, Fail, ...) share no useful base
        raise OnnxExportError(f"onnxruntime cannot run it: {e}") from e
    with torch.inference_mode():
        want = model(probe).float().numpy()
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not diff <= TOLERANCE * max(1.0, float(np.abs(want).max())):
        raise OnnxExportError(f"its output differs from torch's by {diff:.3g} (shape {got.shape} vs {want.shape})")
    logger.debug("ONNX %s matches torch to %.3g", path.name, diff)
    return session


def _module(enc: TorchImageEncoder) -> nn.Module:
    """The torch module behind ``enc``'s forward: the model itself, or a module calling a method of one."""
    from torch import nn

    fn = enc._forward
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    if not isinstance(owner, nn.Module):
        raise OnnxExportError(f"the forward of {enc.spec} is not a torch module or a method of one")

    class BoundMethod(nn.Module):
        """``owner.<method>(x)`` as a module, so that the exporter sees the owner's weights (open_clip)."""

        def __init__(self) -> None:
            super().__init__()
            self.owner = owner

        def forward(self, x: Any) -> Any:
            return getattr(self.owner, fn.__name__)(x)

    return BoundMethod()


def _probe_batch(enc: TorchImageEncoder) -> Any:
    """Two seeded noise images of the size ``enc``'s transform produces: the export's example and the check."""
    import torch
    from PIL import Image

    shape = tuple(enc.transform(Image.new("RGB", (64, 64))).shape)
    return torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))


def _cache_key(enc: TorchImageEncoder, model: nn.Module, probe: Any) -> str:
    """sha256 of what makes the graph: spec, version, torch, opset, input shape and a weights fingerprint.

    The fingerprint (per tensor: name, shape, sum, first values) catches a checkpoint overwritten at the
    same path and random-weight models, which the spec and version alone would not tell apart.
    """
    import torch

    h = hashlib.sha256(json.dumps([enc.spec, enc.version, torch.__version__, OPSET, _EXPORT_FORMAT,
                                   list(probe.shape[1:])]).encode())
    with torch.no_grad():
        for name, t in model.state_dict().items():
            flat = t.detach().reshape(-1)
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(np.asarray([float(flat.double().sum())] if flat.is_floating_point() else [], np.float64))
            h.update(flat[:8].float().numpy().tobytes() if flat.is_floating_point() else flat[:8].numpy().tobytes())
    return h.hexdigest()[:16]


def _slug(enc: TorchImageEncoder) -> str:
    """A readable file-name stem from the spec: its scheme and architecture."""
    scheme, _, body = enc.spec.partition(":")
    arch = re.split(r"[@/]", body, maxsplit=1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{scheme}-{arch}")[:60]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cores() -> int:
    """The cores this process may use: its CPU affinity, capped by ``OMP_NUM_THREADS`` where that is set.

    Ray sets ``OMP_NUM_THREADS`` to an actor's CPUs, so two one-CPU actors on two cores run one ORT thread
    each instead of two apiece fighting for them.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(omp))) if omp.isdigit() and int(omp) > 0 else cores
