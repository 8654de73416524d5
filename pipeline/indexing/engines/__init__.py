"""Engines: where a build's heavy stages run, the shards' embedding and the FAISS adds.

``local`` runs them in this process; ``ray`` runs them on a Ray cluster (``pip install 'relspace[ray]'``).
Both write the same shards and end in the same merge step (:mod:`pipeline.indexing.commit`), so an index does not
depend on which engine built it.
"""

from . import local, on_ray  # noqa: F401  (register the engines; Ray itself is imported only when used)
from .base import ENGINES, Engine, make_engine

__all__ = ["ENGINES", "Engine", "make_engine"]
