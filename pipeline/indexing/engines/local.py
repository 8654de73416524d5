"""The local engine: shards one after another in this process, FAISS adds in order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...store.shards import Shard
from ..stream import Projection, ShardTask, project_here
from .base import ENGINES, Engine


@ENGINES.register("local")
class LocalEngine(Engine):
    name = "local"

    def write_shards(self, ds: Any, root: Path, projection: Projection, tasks: Sequence[ShardTask],
                     source: str) -> list[Shard]:
        return project_here(ds, root, projection, tasks, source)
