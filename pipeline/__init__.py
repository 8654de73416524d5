"""relspace: cross-modal text-image retrieval through relative representations, with no alignment training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = [
    "Config",
    "Hit",
    "IndexMismatchError",
    "Limits",
    "LocalEngine",
    "RayEngine",
    "Retriever",
    "__version__",
    "are_progress_bars_disabled",
    "create_encoder",
    "disable_progress_bars",
    "enable_progress_bars",
    "evaluate",
    "list_encoders",
    "list_methods",
    "load_config",
    "make_engine",
]

# Heavy pieces (torch, faiss, datasets) load on first use, so that `import pipeline` stays fast.
_LAZY = {
    "Retriever": "pipeline.retriever",
    "Hit": "pipeline.retriever",
    "IndexMismatchError": "pipeline.store.manifest",
    "Config": "pipeline.config",
    "load_config": "pipeline.config",
    "create_encoder": "pipeline.encoders",
    "list_encoders": "pipeline.encoders",
    "evaluate": "pipeline.evaluate",
    "list_methods": "pipeline.evaluate.methods",
    "Limits": "pipeline.core.limits",
    "LocalEngine": "pipeline.indexing.engines.local",
    "RayEngine": "pipeline.indexing.engines.on_ray",
    "make_engine": "pipeline.indexing.engines",
    "disable_progress_bars": "pipeline.core.progress",
    "enable_progress_bars": "pipeline.core.progress",
    "are_progress_bars_disabled": "pipeline.core.progress",
}

if TYPE_CHECKING:
    from .config import Config, load_config
    from .core.limits import Limits
    from .core.progress import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from .encoders import create_encoder, list_encoders
    from .evaluate import evaluate
    from .evaluate.methods import list_methods
    from .indexing.engines import make_engine
    from .indexing.engines.local import LocalEngine
    from .indexing.engines.on_ray import RayEngine
    from .retriever import Hit, Retriever
    from .store.manifest import IndexMismatchError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
