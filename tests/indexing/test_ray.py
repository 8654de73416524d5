"""The Ray engine on a local cluster: its builds and adds equal the local engine's, and survive a killed actor.

With ``$RELSPACE_REQUIRE_RAY`` or ``$CI`` set (``.ci/run`` sets the first) a missing Ray fails the run
instead of skipping it: these tests are part of what CI checks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import Retriever
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.core.spaces import MODALITIES
from pipeline.data import load_data
from pipeline.indexing.engines import make_engine
from pipeline.store.layout import SHARD_META, SHARDS, index_file, items_file, partial_dir
from pipeline.store.shards import list_shards

from ..conftest import SMALL_ITEMS, stored_rows

ROOT = Path(__file__).resolve().parents[2]
N_QUERIES = 50
# The engines are plumbing: a seeded third of the demo, in all nine languages, spread over several shards, shows
# that Ray builds what the local engine builds at a third of the cost of the whole demo (4 minutes of setup);
# 640 items still give IVF16 the 39 training points per centroid that FAISS asks for.
DEMO_SUBSET = {"data.limit": 640, "anchors.count": 160, "shard_size": 128, "index.thumbnails": 0}
DEMO_SHARDS = 5

# Every test here starts or uses a Ray cluster (about 10 s before the first task): the full suite's, not the fast lane's.
pytestmark = pytest.mark.slow

if os.environ.get("RELSPACE_REQUIRE_RAY") or os.environ.get("CI"):
    import ray  # noqa: F401  (CI installs relspace[ray]: a missing Ray is an error there, never a skip)
else:
    ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local two-CPU Ray cluster for the session, with a bounded object store."""
    import ray

    ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_builds(ray_cluster, cache_dir, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """The OpenMoji demo config, on a seeded subset, built by each engine, as Flat and as IVF, in shards of 128.

    The Ray builds have their own embedding cache, so their actors embed every item themselves; each
    engine's IVF build reuses its own Flat build's embeddings.
    """
    out = tmp_path_factory.mktemp("demo-builds")
    caches = {"local": cache_dir, "ray": tmp_path_factory.mktemp("ray-cache")}
    builds = {}
    for factory in ("Flat", "IVF16,Flat"):
        for engine in ("local", "ray"):
            cfg = load_config(ROOT / "configs" / "openmoji.yaml", **{
                "data.cache_dir": str(caches[engine]), "index.factory": factory, **DEMO_SUBSET})
            path = out / f"{engine}-{factory.split(',')[0]}"
            Retriever.build(cfg, path, engine=engine)
            builds[engine, factory] = path
    return builds


def _queries(cache_dir: Path) -> tuple[list[str], list[bytes]]:
    """A fixed set of text and image queries: captions and images of every 38th demo item."""
    ds = load_data(load_config(ROOT / "configs" / "openmoji.yaml", **{"data.cache_dir": str(cache_dir)}).data)
    rows = ds.select(range(0, len(ds), len(ds) // N_QUERIES)[:N_QUERIES])
    return list(rows["caption"]), list(rows["image"])


def _rows(path: Path, modality: str) -> tuple[list[tuple], np.ndarray]:
    """An index's stored rows and vectors in FAISS order, checked against its FAISS count."""
    r = Retriever.load(path)
    keys, vecs = stored_rows(r, modality)
    assert r.indexes[modality].ntotal == len(keys) == len(vecs)
    return keys, vecs


def _assert_same_index(a: Path, b: Path, *, same_shards: bool = True) -> None:
    """Same rows in the same order and relative vectors within 1e-5, in both modalities.

    Captions are stored shard by shard, one language after another, so with other shard sizes only the
    images keep their order; then the captions are matched by (id, lang, caption).
    """
    for m in MODALITIES:
        (ka, va), (kb, vb) = _rows(a, m), _rows(b, m)
        if m == "text" and not same_shards:
            order = {k: i for i, k in enumerate(kb)}
            assert sorted(ka) == sorted(kb)
            vb = vb[[order[k] for k in ka]]
        else:
            assert ka == kb
        assert va.shape == vb.shape and np.abs(va - vb).max() <= 1e-5


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_ray_build_of_the_demo_equals_the_local_build(demo_builds, cache_dir, factory):
    local, distributed = demo_builds["local", factory], demo_builds["ray", factory]
    _assert_same_index(local, distributed)
    assert len(list_shards(distributed / SHARDS)) == DEMO_SHARDS  # 640 items in shards of 128: the work was spread
    texts, images = _queries(cache_dir)
    ra, rb = Retriever.load(local), Retriever.load(distributed)
    for kind, queries in (("text", texts), ("image", images)):
        for q in queries:
            ha, hb = (r.search(**{kind: q}, k=10) for r in (ra, rb))
            assert [(h.id, h.lang, h.caption) for h in ha] == [(h.id, h.lang, h.caption) for h in hb], q
            assert np.allclose([h.score for h in ha], [h.score for h in hb], atol=1e-5)
    if factory.startswith("IVF"):  # shards added on workers and merged in order: the very same inverted lists
        for m in MODALITIES:
            assert (local / index_file(m)).read_bytes() == (distributed / index_file(m)).read_bytes()


def test_relspace_add_on_ray_equals_a_local_add(ray_cluster, small_index, tmp_path):
    local, distributed = tmp_path / "local", tmp_path / "ray"
    for path in (local, distributed):
        shutil.copytree(small_index, path)
    new_items = ROOT / "configs" / "new-items.yaml"
    cwd = os.getcwd()
    os.chdir(ROOT)  # the config names its folder relative to the checkout, as the README runs it
    try:
        Retriever.load(local).add(new_items)
        assert main(["-q", "add", str(distributed), str(new_items), "--engine", "ray", "--num-actors", "2"]) == 0
    finally:
        os.chdir(cwd)
    _assert_same_index(local, distributed)
    for m in MODALITIES:
        assert (local / items_file(m)).read_bytes() == (distributed / items_file(m)).read_bytes()
    ids = Retriever.load(distributed).items["image"].column("id").to_pylist()
    assert len(ids) == SMALL_ITEMS + 2 and ids[-2:] == ["blue-square", "green-triangle"]


def test_a_killed_actor_is_replaced_and_the_build_completes(ray_cluster, small_config, small_index, tmp_path):
    """SIGKILL one encoder actor once the first shard is written; Ray restarts it and retries its shard."""
    import psutil

    cfg = load_config(small_config, shard_size=20)  # 8 shards, so the kill lands mid-build
    out = tmp_path / "killed"
    shards = partial_dir(out) / SHARDS
    result: dict[str, object] = {}

    def build() -> None:
        try:
            Retriever.build(cfg, out, engine=make_engine("ray", num_actors=2))
        except BaseException as e:  # reported below, in the test's thread
            result["error"] = e

    thread = threading.Thread(target=build)
    thread.start()
    deadline = time.monotonic() + 300
    while not (shards.is_dir() and list_shards(shards)) and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [p.pid for p in psutil.process_iter(["cmdline"]) if "ShardWorker" in " ".join(p.info["cmdline"] or [])]
    done_at_kill = len(list_shards(shards)) if shards.is_dir() else 0
    assert workers and thread.is_alive(), "the build ended before an actor could be killed"
    os.kill(workers[0], signal.SIGKILL)  # Ray titles an actor's process ray::MapWorker(MapBatches(ShardWorker))
    thread.join(timeout=600)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    assert done_at_kill < 8  # the kill came while shards were still being made
    with pytest.raises(ProcessLookupError):  # the killed process is gone: its shard was redone elsewhere
        os.kill(workers[0], 0)
    _assert_same_index(small_index, out, same_shards=False)  # and the result is the local build's


def test_a_build_whose_driver_dies_resumes_from_its_finished_shards(ray_cluster, small_config, small_index, tmp_path):
    """SIGKILL a ``relspace build --engine ray`` (its driver and its own cluster); the next build keeps its shards."""
    cfg = load_config(small_config, shard_size=20)
    path = tmp_path / "small.yaml"
    cfg.save(path)
    out = tmp_path / "driver-killed"
    shards = partial_dir(out) / SHARDS
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "-q", "build", str(path), "--out", str(out),
                             "--engine", "ray", "--num-actors", "2"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while not (shards.is_dir() and len(list_shards(shards)) >= 2):
        assert proc.poll() is None, f"the build ended before it could be killed: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no shard was written in 10 minutes"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: (p / SHARD_META).stat().st_mtime_ns for p in list_shards(shards)}
    assert not out.exists() and 2 <= len(done) < 8

    Retriever.build(cfg, out, engine="ray")
    assert {name: (out / SHARDS / name / SHARD_META).stat().st_mtime_ns for name in done} == done  # kept, not redone
    _assert_same_index(small_index, out, same_shards=False)
