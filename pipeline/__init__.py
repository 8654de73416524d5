"""relspace: cross-modal text-image retrieval through relative representations, with no alignment training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = [
    "Config",
    "Hit",
    "IndexMismatchError",
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
    "IndexMismatchError": "pipeline.manifest",
    "Config": "pipeline.config",
    "load_config": "pipeline.config",
    "create_encoder": "pipeline.encoders",
    "list_encoders": "pipeline.encoders",
    "evaluate": "pipeline.evaluate",
    "list_methods": "pipeline.methods",
}

if TYPE_CHECKING:
    from .config import Config, load_config
    from .encoders import create_encoder, list_encoders
    from .evaluate import evaluate
    from .manifest import IndexMismatchError
    from .methods import list_methods
    from .retriever import Hit, Retriever


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
