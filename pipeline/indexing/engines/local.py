"""The local engine: shards one after another in this process, FAISS adds in order."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...core.progress import progress
from ...store.shards import Shard
from ..stream import Projection, ShardTask, log_shard, project_shard
from .base import ENGINES, OVERALL, Engine

logger = logging.getLogger(__name__)


@ENGINES.register("local")
class LocalEngine(Engine):
    """This process: one model per encoder, shards in order, under one bar over all their items."""

    name = "local"

    def make_shards(self, ds: Any, root: Path, projection: Projection, tasks: Sequence[ShardTask],
                    source: str) -> list[Shard]:
        total = sum(t.rows[1] - t.rows[0] for t in tasks)
        shards, done, t0 = [], 0, time.perf_counter()
        # One bar over every item of every shard, moved per encoded batch; the encoders' own bars stay off under it.
        with progress(total=total, desc=OVERALL, unit="item") as bar:
            for task in tasks:
                t = time.perf_counter()
                shards.append(project_shard(ds, root, projection, task, source, show_progress=False, bar=bar))
                size = task.rows[1] - task.rows[0]
                done += size
                log_shard(task, size, time.perf_counter() - t, done, total, time.perf_counter() - t0)
        return shards
