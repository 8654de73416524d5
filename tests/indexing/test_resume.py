"""A build killed with SIGKILL resumes from its finished shards and ends equal to an uninterrupted build."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import Retriever
from pipeline.config import load_config
from pipeline.indexing.engines.local import LocalEngine
from pipeline.store.layout import SHARD_META, partial_dir
from pipeline.store.shards import list_shards, open_shards

REPO = Path(__file__).resolve().parents[2]


def _stored(index_dir: Path) -> tuple[dict[str, list], dict[str, np.ndarray]]:
    import pyarrow.parquet as pq

    shards = open_shards(index_dir)
    rows = {m: pq.read_table(index_dir / f"{m}_items.parquet").column("id").to_pylist() for m in ("image", "text")}
    return rows, {m: np.vstack([np.asarray(s.vectors(m)) for s in shards]) for m in ("image", "text")}


class _Recording(LocalEngine):
    """The local engine, noting which shards it makes and which indexes it fills."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.adds = 0

    def make_shards(self, ds, root, projection, tasks, source):  # type: ignore[override]
        shards = super().make_shards(ds, root, projection, tasks, source)
        self.made += [s.path.name for s in shards]
        return shards

    def add(self, index, blocks, desc="FAISS add") -> None:  # type: ignore[override]
        self.adds += 1
        super().add(index, blocks, desc)


@pytest.mark.slow
def test_killed_build_resumes_and_equals_an_uninterrupted_one(small_config, tmp_path, caplog) -> None:
    cfg = load_config({"name": "resume", "shard_size": 8, "anchors": {"count": 40}, "index": {"thumbnails": 0},
                       "data": {"limit": 120, "languages": ["en", "es"], "cache_dir": small_config.data.cache_dir}})
    path = tmp_path / "resume.yaml"
    cfg.save(path)
    out = tmp_path / "killed"
    work = partial_dir(out)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "-q", "build", str(path), "--out", str(out)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while len(list_shards(work / "shards")) < 3:
        assert proc.poll() is None, f"the build ended before it could be killed: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no shard was written in 10 minutes"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and work.is_dir()
    done = list_shards(work / "shards")
    assert 3 <= len(done) < 15
    # Damage what the next run must not trust: a truncated vector file, and a shard that vanished.
    (done[0] / "image.npy").write_bytes((done[0] / "image.npy").read_bytes()[:-64])
    for f in done[1].iterdir():
        f.unlink()
    done[1].rmdir()
    kept = {p.name: (p / SHARD_META).stat().st_mtime_ns for p in done[2:]}

    with caplog.at_level(logging.INFO, logger="pipeline"):
        Retriever.build(cfg, out)
    log = caplog.text
    assert "resuming the build" in log
    assert "shards/000000: image.npy is damaged" in log and "rebuilding it" in log
    assert "shard 1/15:" in log and "shard 2/15:" in log  # shards keep their place in the build after a resume
    assert {p.name: (p / SHARD_META).stat().st_mtime_ns for p in list_shards(out / "shards")
            if p.name in kept} == kept  # finished shards are reused, not redone
    assert not work.exists()

    whole = tmp_path / "whole"
    engine = _Recording()
    Retriever.build(cfg, whole, resume=False, engine=engine)
    assert engine.made == [f"{i:06d}" for i in range(15)]  # the engine given at the entry made every shard
    assert engine.adds == 2  # and filled both FAISS indexes: no default engine further down
    (rows_a, vecs_a), (rows_b, vecs_b) = _stored(out), _stored(whole)
    assert rows_a == rows_b
    for m in ("image", "text"):
        assert vecs_a[m].shape == vecs_b[m].shape and float(np.abs(vecs_a[m] - vecs_b[m]).max()) < 1e-5
    r_a, r_b = Retriever.load(out), Retriever.load(whole)
    for q in ("a dog", "a red car", "the moon"):
        assert [h.id for h in r_a.search(q, k=10)] == [h.id for h in r_b.search(q, k=10)]


def test_resume_flag_needs_a_stopped_build(small_config, tmp_path) -> None:
    cfg = load_config({"name": "none", "data": {"limit": 30, "cache_dir": small_config.data.cache_dir},
                       "anchors": {"count": 10}})
    with pytest.raises(ValueError, match="nothing to resume .*none exists"):
        Retriever.build(cfg, tmp_path / "none", resume=True)


def test_shard_lines_keep_their_place_in_the_build(caplog) -> None:
    """After a resume, the remaining shards were renumbered from 1 ("1/2" instead of "4/5")."""
    from pipeline.indexing.stream import ShardTask, log_shard

    with caplog.at_level(logging.INFO, logger="pipeline.indexing.stream"):
        log_shard(ShardTask(3, (30, 40), (4, 5)), 10, 1.0, 10, 20, 1.0)
    assert "shard 4/5: 10 items" in caplog.text
