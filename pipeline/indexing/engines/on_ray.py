"""The Ray engine: shards embedded by an actor pool, and IVF indexes filled shard by shard on the cluster.

Ray Data schedules one block per shard onto a pool of actors (``map_batches`` with a class). Each actor
unpickles the projection once, which loads its own encoders (an encoder pickles as its recipe, never its
weights) and holds the fitted projectors, so workers return nothing but the shard they wrote: m floats
per item, in the same atomic shard format as a local build. A dead actor is restarted and its shard
retried by Ray; a dead driver leaves finished shards that the next build keeps.

For an IVF index, each worker adds one shard to a copy of the trained, empty index, and the driver merges
the parts in shard order (``merge_from``), which gives the same inverted lists as adding in order. Other
index types are filled in the driver, in order. Paths (shards, the source's files, the cache) must be on
storage every node can read: one machine, or a shared filesystem on a cluster.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...ann.faiss_index import add_blocks
from ...core.progress import progress
from ...store.layout import shard_name
from ...store.shards import Shard, StoredVectors, read_shard
from ..stream import Projection, ShardTask, log_shard, project_shard
from .base import ENGINES, OVERALL, Engine

logger = logging.getLogger(__name__)


# Ray's own output on a build: the driver's C++ warnings (core_worker.cc on actors whose constructor arguments sit
# in the object store, which ours do), its token-auth notice, the workers' forwarded logs and Ray Data's
# execution logs and bars. relspace draws one bar over the shards instead. All of it stays in the session's log
# files (/tmp/ray/session_latest/logs); each setting below yields to one the user made.
QUIET_ENV = {"RAY_BACKEND_LOG_LEVEL": "fatal"}
QUIET_INIT: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}


def quiet_ray(ray: Any) -> None:
    """Quiet Ray before relspace's own ``ray.init`` (a session the caller started is left as it is)."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = context.print_on_execution_start = False
    # Ray Data prints through its own console handler (its logger does not propagate, so no logging setup of the
    # application reaches it); only that handler is raised, the ray-data.log file keeps everything.
    for handler in logging.getLogger("ray.data").handlers:
        if handler.get_name() == "console":
            handler.setLevel(logging.ERROR)


@ENGINES.register("ray")
@dataclass
class RayEngine(Engine):
    """Ray cluster options; the pool is sized from the cluster unless ``num_actors`` says otherwise."""

    name = "ray"

    address: str | None = None  # a running cluster ("auto", "ray://host:10001"); None: $RAY_ADDRESS or a local one
    num_actors: int | None = None  # encoder actors; None: one per GPU, else one per actor_cpus of the cluster
    actor_cpus: float = 1.0  # CPUs per actor (and per FAISS add task); also its torch/ORT threads
    actor_gpus: float | None = None  # GPUs per actor; None: 1 if the cluster has GPUs, else 0
    init: dict[str, Any] = field(default_factory=dict)  # more ray.init arguments, e.g. object_store_memory

    def __post_init__(self) -> None:
        # Refused where the engine is chosen, before any data, model or partial build directory: Ray missing
        # was found only once the shards were due, minutes in, with a .partial directory left behind.
        try:
            import ray  # noqa: F401
        except ImportError:
            raise RuntimeError("the ray engine needs Ray: pip install 'relspace[ray]'") from None

    def make_shards(self, ds: Any, root: Path, projection: Projection, tasks: Sequence[ShardTask],
                    source: str) -> list[Shard]:
        ray = self.connect()
        actors, gpus = self.pool_size(len(tasks))
        logger.info("ray: %d shards on %d actors (%g CPU%s each)", len(tasks), actors, self.actor_cpus,
                    f", {gpus:g} GPU" if gpus else "")
        root = Path(root).resolve()
        cache = Path(projection.cache).resolve() if projection.cache else None
        blocks = ray.data.from_items([{"number": t.number, "start": t.rows[0], "stop": t.rows[1]} for t in tasks],
                                     override_num_blocks=len(tasks))
        made = blocks.map_batches(
            ShardWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=self.actor_cpus,
            num_gpus=gpus or None,
            fn_constructor_args=(ds, dataclasses.replace(projection, cache=cache), str(root), source),
        )
        total = sum(t.rows[1] - t.rows[0] for t in tasks)
        done, t0 = 0, time.perf_counter()
        with progress(total=total, desc=f"{OVERALL} (ray, shards of {tasks[0].rows[1] - tasks[0].rows[0]})",
                      unit="item") as bar:  # moved as shards finish: the actors' batches are not seen here
            by_number = {t.number: t for t in tasks}
            for row in made.iter_rows():
                done += int(row["items"])
                bar.update(int(row["items"]))
                log_shard(by_number[int(row["number"])], int(row["items"]), float(row["seconds"]), done, total,
                          time.perf_counter() - t0)
        # what the workers wrote is checked like any shard on disk: complete, same rows, source and anchors
        return [read_shard(root / shard_name(t.number), source=source, anchors=projection.anchors, rows=t.rows)
                for t in tasks]

    def add(self, index: Any, blocks: Sequence[Any], desc: str = "FAISS add") -> None:
        """IVF: each shard added to a copy of the trained index on a worker, merged here in order."""
        import faiss

        paths = [getattr(b, "path", None) for b in blocks]
        if not isinstance(faiss.downcast_index(index), faiss.IndexIVF) or len(blocks) < 2 or None in paths:
            return super().add(index, blocks, desc)  # Flat, HNSW, refined or pre-transformed: gather in order
        ray = self.connect()
        empty = faiss.clone_index(index) if index.ntotal else index
        if index.ntotal:
            empty.reset()
        template = ray.put(faiss.serialize_index(empty))
        fill = ray.remote(num_cpus=self.actor_cpus)(_fill_shard)
        parts = [fill.remote(template, str(p)) for p in paths]
        ivf = faiss.downcast_index(index)
        for i, ref in enumerate(parts):
            part = faiss.deserialize_index(ray.get(ref))  # owns the C++ index: keep it alive through the merge
            ivf.merge_from(faiss.downcast_index(part), ivf.ntotal)
            parts[i] = part = None  # release the object as soon as it is merged
        logger.info("%s: %d shards added on ray workers and merged (%d vectors)", desc, len(paths), index.ntotal)

    def connect(self) -> Any:
        """The ``ray`` module, connected: to ``address``, to an already initialised session, or a new local one."""
        try:
            import ray
            import ray.data  # noqa: F401
        except ImportError:
            raise RuntimeError("the ray engine needs Ray: pip install 'relspace[ray]'") from None
        if not ray.is_initialized():
            quiet_ray(ray)
            try:
                ray.init(address=self.address, **{**QUIET_INIT, **self.init})
            except ConnectionError:
                if not self.address:
                    raise
                raise RuntimeError(
                    f"no Ray cluster is running at address {self.address!r}: start one first with `ray start --head`, "
                    "or leave out the address (--address) to run a local cluster in this process") from None
        return ray

    def pool_size(self, tasks: int) -> tuple[int, float]:
        """(actors, GPUs per actor) from the options, else from the cluster's resources; never more than tasks."""
        import ray

        resources = ray.cluster_resources()
        gpus = self.actor_gpus if self.actor_gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
        if self.num_actors is not None:
            actors = self.num_actors
        elif gpus:
            actors = int(resources["GPU"] // gpus)
        else:
            actors = int(resources.get("CPU", 1) // self.actor_cpus)
        return max(1, min(actors, tasks)), gpus


class ShardWorker:
    """One actor of the pool: the source and the projection (its encoders load here, once), then shards."""

    def __init__(self, ds: Any, projection: Projection, root: str, source: str):
        self.ds, self.projection, self.root, self.source = ds, projection, Path(root), source

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seconds = []
        for number, start, stop in zip(batch["number"], batch["start"], batch["stop"]):
            t0 = time.perf_counter()
            project_shard(self.ds, self.root, self.projection, ShardTask(int(number), (int(start), int(stop))),
                          self.source)
            seconds.append(time.perf_counter() - t0)
        return {"number": batch["number"], "items": batch["stop"] - batch["start"], "seconds": np.array(seconds)}


def _fill_shard(template: np.ndarray, path: str) -> np.ndarray:
    """A Ray task: the trained empty index with one shard's vectors added, serialized."""
    import faiss

    index = faiss.deserialize_index(template)
    add_blocks(index, [StoredVectors(Path(path))], desc=f"FAISS add ({Path(path).parent.name})")
    return faiss.serialize_index(index)
