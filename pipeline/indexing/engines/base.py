"""The engine interface and registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...ann.faiss_index import add_blocks
from ...core.registry import Registry
from ...store.shards import Shard
from ..stream import Projection, ShardTask, plan_shards

OVERALL = "embed items"  # the one bar of a build or an add, over every item of its shards (either engine)


class Engine(ABC):
    """Runs shard tasks and fills trained FAISS indexes; everything else of a build runs in the caller.

    Every stage below the public entry points (``Retriever``, the CLI) is given one: the default is chosen
    there, once (:func:`make_engine`), never again further down.
    """

    name = "engine"

    def write_shards(self, ds: Any, root: Path, projection: Projection, *, shard_size: int,
                     first: int = 0) -> list[Shard]:
        """Project ``ds`` into shards ``first, first+1, ...`` under ``root``, in order, keeping those complete.

        Which shards are complete is decided the same way for every engine (:func:`..stream.plan_shards`);
        the ones left run on this engine (:meth:`make_shards`).
        """
        plan = plan_shards(ds, root, projection, shard_size=shard_size, first=first)
        made = self.make_shards(ds, root, projection, plan.tasks, plan.source) if plan.tasks else []
        return sorted([*plan.kept, *made], key=lambda shard: shard.path.name)

    @abstractmethod
    def make_shards(self, ds: Any, root: Path, projection: Projection, tasks: Sequence[ShardTask],
                    source: str) -> list[Shard]:
        """Make the shards of ``tasks`` (rows of ``ds``) under ``root``, each written atomically."""

    def add(self, index: Any, blocks: Sequence[Any], desc: str = "FAISS add") -> None:
        """Append ``blocks`` to a trained ``index`` in order, FAISS ids continuing from ``index.ntotal``."""
        add_blocks(index, blocks, desc=desc)


ENGINES: Registry[type[Engine]] = Registry("engine")


def make_engine(engine: str | Engine | None = None, **options: Any) -> Engine:
    """An engine by name (default ``local``) with its options, or ``engine`` itself if it is one.

    Options that are None are left at the engine's defaults; an option the engine does not have is
    refused by name.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(engine, Engine):
        if options:
            raise ValueError(f"engine options {sorted(options)} given with an engine instance; set them on it")
        return engine
    cls = ENGINES.get(engine or "local")
    known = getattr(cls, "__dataclass_fields__", {})
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"the {cls.name} engine has no option {unknown[0]!r}"
                         + (f"; its options: {', '.join(known)}" if known else ""))
    return cls(**options)
