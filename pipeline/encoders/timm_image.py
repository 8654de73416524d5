"""``timm:<arch>[@<checkpoint>]``: pooled timm image features; EfficientNet-PyTorch names are mapped."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import register_encoder
from .torch_image import TorchImageEncoder

if TYPE_CHECKING:
    from torch import Tensor, nn

logger = logging.getLogger(__name__)

# Wrappers that training scripts put around the weights; the first one present is unwrapped.
_WRAPPER_KEYS = ("state_dict", "model")

# EfficientNet-PyTorch names a block's layers by role; timm names them by position, and which position
# depends on the block type. The first stage of EfficientNet is a depthwise-separable block with no
# expansion conv (timm: DepthwiseSeparableConv); every later block is an inverted residual.
_DS_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_se_reduce": "se.conv_reduce",
    "_se_expand": "se.conv_expand",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# Layers outside the blocks (stem, head, classifier).
_OUTER = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file, refusing pickled objects other than tensors.

    ``weights_only=True`` because a checkpoint path may come from a config file: a full unpickle would run
    whatever code the file carries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(path), device="cpu")
    else:
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # an unsafe pickle or a corrupt file: either way not loadable
            raise ValueError(f"cannot load checkpoint {path} as a weights-only state dict: {e}") from e
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def _check_against(model: nn.Module, state_dict: Mapping[str, Tensor], source: Mapping[str, str]) -> None:
    """Raise ValueError naming the first key that is missing, unexpected or of the wrong shape.

    ``source`` maps a target key back to its name in the checkpoint, so that the message names both.
    torch's own strict load reports these as a RuntimeError with every key listed; one clear key is
    easier to act on.
    """
    expected = model.state_dict()

    def name(key: str) -> str:
        orig = source.get(key, key)
        return repr(key) if orig == key else f"{orig!r} (mapped to {key!r})"

    for key, tensor in state_dict.items():
        if key not in expected:
            raise ValueError(f"checkpoint key {name(key)} has no counterpart in the model")
        want, got = tuple(expected[key].shape), tuple(tensor.shape)
        if want != got:
            raise ValueError(f"checkpoint key {name(key)} has shape {got}, the model expects {want}")
    missing = [k for k in expected if k not in state_dict]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"checkpoint lacks the model's key {missing[0]!r}{more}")


def _timm_block_names(model: nn.Module) -> list[tuple[str, dict[str, str]]]:
    """The model's blocks in forward order as (prefix, layer map), read from its own ``blocks`` stages.

    Reading the structure rather than hard-coding stage lengths keeps lite0/1/2 (and b0-b7) all right:
    they differ exactly in how many blocks each stage repeats.
    """
    stages = getattr(model, "blocks", None)
    if stages is None or not hasattr(model, "conv_stem"):
        raise ValueError(
            f"an EfficientNet-PyTorch checkpoint needs a timm EfficientNet, not {type(model).__name__}"
        )
    out = []
    for s, stage in enumerate(stages):
        for b, block in enumerate(stage):
            layers = _IR_BLOCK if hasattr(block, "conv_pwl") else _DS_BLOCK
            out.append((f"blocks.{s}.{b}", layers))
    return out


def efficientnet_pytorch_to_timm(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename an EfficientNet-PyTorch state dict (``_conv_stem``, ``_blocks.N...``) to timm's EfficientNet.

    The source numbers blocks flat (``_blocks.0`` .. ``_blocks.15`` for lite0), timm by (stage, block);
    the flat order of timm's stages is the forward order, the same as the source's. Every tensor is
    checked against the model's shape, so a checkpoint for another width or depth fails here, by name.
    ``_fc.*`` is dropped when the model has no classifier (``num_classes=0``).

    Raises:
        ValueError: a key that maps nowhere, a shape mismatch, or a model key the checkpoint lacks.
    """
    blocks = _timm_block_names(model)
    has_classifier = any(k.startswith("classifier.") for k in model.state_dict())
    source: dict[str, str] = {}  # timm key -> checkpoint key, for error messages
    out: dict[str, Tensor] = {}
    for key, tensor in state_dict.items():
        head, _, rest = key.partition(".")
        if head == "_blocks":
            idx, _, rest = rest.partition(".")
            layer, _, param = rest.partition(".")
            if not idx.isdigit() or int(idx) >= len(blocks):
                raise ValueError(
                    f"checkpoint key {key!r}: block {idx} does not exist in the model ({len(blocks)} blocks)"
                )
            prefix, layers = blocks[int(idx)]
            if layer not in layers:
                raise ValueError(f"checkpoint key {key!r}: unknown layer {layer!r} in an EfficientNet block")
            new = f"{prefix}.{layers[layer]}.{param}"
        elif head in _OUTER:
            if head == "_fc" and not has_classifier:
                continue
            new = f"{_OUTER[head]}.{rest}"
        else:
            raise ValueError(f"checkpoint key {key!r} is not an EfficientNet-PyTorch name")
        source[new] = key
        out[new] = tensor
    _check_against(model, out, source)
    return out


def _is_efficientnet_pytorch(state_dict: Mapping[str, Any]) -> bool:
    return "_conv_stem.weight" in state_dict


def _strip_prefix(state_dict: dict[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Undo DataParallel's ``module.`` prefix when every key has it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return state_dict


def load_timm_model(
    arch: str, checkpoint: str | os.PathLike[str] | None = None, num_classes: int = 0
) -> nn.Module:
    """Build timm ``arch`` in eval mode, weights from ``checkpoint`` (timm or EfficientNet-PyTorch names).

    ``pretrained=False`` always: there is no hub here, and a checkpoint path keeps runs reproducible.
    ``num_classes=0`` makes the model return pooled pre-classifier features, which is what retrieval needs.
    """
    import timm

    if not arch or not timm.is_model(arch):
        close = timm.list_models(f"*{arch}*")[:10] if arch else []
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown timm architecture {arch!r}{hint}")
    if checkpoint is not None and not Path(checkpoint).is_file():  # ValueError, as for open_clip specs
        raise ValueError(f"timm checkpoint not found: {checkpoint}")
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    if checkpoint is None:
        logger.warning("timm:%s has no checkpoint: its weights are random", arch)
    else:
        state_dict = _strip_prefix(load_state_dict(checkpoint))
        if _is_efficientnet_pytorch(state_dict):
            state_dict = efficientnet_pytorch_to_timm(state_dict, model)
            logger.info("mapped EfficientNet-PyTorch checkpoint %s onto timm %s", checkpoint, arch)
        else:
            expected = model.state_dict()
            unknown = [k for k in state_dict if k not in expected]
            if unknown and not any(k in expected for k in state_dict):
                raise ValueError(
                    f"checkpoint {checkpoint} matches neither timm {arch} nor EfficientNet-PyTorch names "
                    f"(first key {unknown[0]!r})"
                )
            if num_classes == 0:  # a classifier the model does not have is not an error: drop it
                clf = f"{model.pretrained_cfg.get('classifier', 'classifier')}."
                state_dict = {
                    k: v for k, v in state_dict.items() if not (k.startswith(clf) and k not in expected)
                }
            _check_against(model, state_dict, {})
        model.load_state_dict(state_dict, strict=True)
    return model.eval()


def parse_body(body: str) -> tuple[str, str | None]:
    """Split ``arch@checkpoint``; the first ``@`` separates, since timm names never contain one."""
    arch, sep, ckpt = body.partition("@")
    return arch.strip(), (os.path.expanduser(ckpt) or None) if sep else None


@register_encoder("timm")
def _create(body: str, modality: str, device: str) -> TorchImageEncoder:
    """Pooled features of a timm model, preprocessed as timm's pretrained config for ``arch`` says.

    The config matters: TF-ported weights such as ``tf_efficientnet_lite*`` expect mean = std = 0.5 and
    bicubic resizing, not the usual ImageNet statistics.
    """
    if modality != "image":
        raise ValueError(f"timm:{body} is an image encoder; it cannot embed {modality}")
    import timm
    import timm.data

    arch, checkpoint = parse_body(body)
    model = load_timm_model(arch, checkpoint, num_classes=0).to(device)
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)
    logger.debug("timm:%s preprocessing %s", arch, cfg)
    weights = Path(checkpoint).name if checkpoint else "random"
    version = f"timm {timm.__version__}; {arch}; {weights}"
    return TorchImageEncoder(f"timm:{body}", model, transform, int(model.num_features), version, device)
