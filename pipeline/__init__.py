"""relspace: cross-modal text-image retrieval through relative representations, with no alignment training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Hit",
    "Retriever",
    "__version__",
    "create_encoder",
    "evaluate",
    "list_encoders",
    "list_methods",
    "load_config",
]

# Heavy pieces (torch, faiss, datasets) load on first use, so that `import pipeline` stays fast.
_LAZY = {
    "Retriever": "pipeline.retriever",
    "Hit": "pipeline.retriever",
    "Config": "pipeline.config",
    "load_config": "pipeline.config",
    "create_encoder": "pipeline.encoders.base",
    "list_encoders": "pipeline.encoders.base",
    "evaluate": "pipeline.evaluate",
    "list_methods": "pipeline.methods",
}

if TYPE_CHECKING:
    from .config import Config, load_config
    from .encoders.base import create_encoder, list_encoders
    from .evaluate import evaluate
    from .methods import list_methods
    from .retriever import Hit, Retriever


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
