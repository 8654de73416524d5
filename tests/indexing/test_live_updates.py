"""Live updates: a running server swaps in each version another process publishes, and answers whole from one.

The first tests drive :class:`IndexReloader` in-process, step by step (the swap window, a damaged version,
a reload); the last starts a real ``relspace serve`` and searches from threads while ``relspace add`` and
``relspace remove`` run in other processes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from benchmarks.load_test import checkout_env, server_process
from pipeline import Retriever
from pipeline.cli import main
from pipeline.data import load_data
from pipeline.serve import create_app
from pipeline.store.layout import MANIFEST
from pipeline.store.manifest import Manifest

from ..conftest import tree_bytes

ROOT = Path(__file__).resolve().parents[2]
NEW_ITEMS = ROOT / "docs" / "new-items"
ADDED = ["blue-square", "green-triangle"]


@pytest.fixture()
def index(small_index: Path, tmp_path: Path) -> Path:
    """A private copy of the small index, to update."""
    shutil.copytree(small_index, tmp_path / "idx")
    return tmp_path / "idx"


@pytest.fixture(scope="module")
def new_items(small_config, tmp_path_factory) -> Path:
    """configs/new-items.yaml with absolute paths and the session's cache: docs/new-items' two items."""
    cfg = yaml.safe_load((ROOT / "configs" / "new-items.yaml").read_text())
    cfg["data"].update(path=str(NEW_ITEMS), cache_dir=small_config.data.cache_dir)
    path = tmp_path_factory.mktemp("new-items") / "new-items.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _relspace(*args: str) -> None:
    """The CLI in its own process, as another user would run it next to a server."""
    subprocess.run([sys.executable, "-m", "pipeline", "-q", *args], check=True, env=checkout_env(), timeout=300)


# -- the manifest's generation, and the defects found on the way -----------------------------------------


def test_generation_grows_with_every_publish_and_old_manifests_still_load(index: Path, new_items: Path) -> None:
    g0 = Manifest.read(index).generation
    assert g0 >= 1  # a build publishes generation 1 (or one past the index it replaces)
    r = Retriever.load(index).add(new_items)
    assert r.manifest.generation == Manifest.read(index).generation == g0 + 1
    r.remove(ADDED)
    assert Manifest.read(index).generation == g0 + 2
    data = json.loads((index / MANIFEST).read_text())
    del data["generation"]  # an index written before the field existed
    (index / MANIFEST).write_text(json.dumps(data))
    assert Retriever.load(index).manifest.generation == 0


def test_a_loaded_index_never_reads_files_of_the_next_version(index: Path, small_retriever) -> None:
    """Regression: thumbnails were read lazily by path, so after a remove an old Retriever read the new shard
    (rows shifted) and lost every thumbnail after the removed row; in a swap's instant it cached "no shards"."""
    ids = small_retriever.items["image"].column("id").to_pylist()
    old = Retriever.load(index)
    assert main(["-q", "remove", str(index), "--ids", ids[0]]) == 0  # rewrites shard 000000 without row 0
    for item_id in ids[1:6]:
        assert old.thumbnail(item_id) == small_retriever.thumbnail(item_id) is not None
    assert old.thumbnail(ids[0]) is not None  # still the version it loaded
    assert Retriever.load(index).thumbnail(ids[0]) is None


def test_a_writer_prepared_against_an_older_generation_is_refused(index: Path, small_retriever) -> None:
    """One rule for every writer (store/publish.commit): an update read at generation g is refused once the
    index is at g+1, and the refused writer, reloaded, keeps the other's history entry (an update once built
    its manifest from the one its caller loaded, and dropped the first writer's entry)."""
    ids = small_retriever.items["image"].column("id").to_pylist()
    first, second = Retriever.load(index), Retriever.load(index)  # both loaded before either writes
    g0, h0 = first.manifest.generation, len(first.manifest.history)
    first.remove([ids[0]])
    with pytest.raises(ValueError, match=rf"the index at {index} changed since it was read \(generation {g0}, "
                                         rf"now {g0 + 1}\): reload it and retry"):
        second.remove([ids[1]])
    second.reload().remove([ids[1]])
    m = Manifest.read(index)
    assert (m.generation, len(m.history), m.counts.items) == (g0 + 2, h0 + 2, len(ids) - 2)


def test_an_add_prepared_against_generation_g_is_refused_at_g_plus_1(index: Path, new_items: Path,
                                                                      small_retriever) -> None:
    ids = small_retriever.items["image"].column("id").to_pylist()
    stale = Retriever.load(index)
    g = stale.manifest.generation
    Retriever.load(index).remove([ids[0]])
    before = tree_bytes(index)
    with pytest.raises(ValueError, match=rf"changed since it was read \(generation {g}, now {g + 1}\): reload"):
        stale.add(new_items)
    assert tree_bytes(index) == before  # nothing changed on disk
    assert sorted(p.name for p in index.parent.iterdir()) == sorted([index.name, f".{index.name}.lock"])
    assert stale.manifest.generation == g and stale.search(text="a blue square", k=3)  # still its own version


def test_reanchor_refuses_to_publish_over_an_update_it_did_not_see(index: Path, small_retriever) -> None:
    """Regression: reanchor took no lock and wrote the manifest it had loaded, so an update published in between
    was copied in under the old counts and the index no longer loaded."""
    ids = small_retriever.items["image"].column("id").to_pylist()
    stale = Retriever.load(index)
    Retriever.load(index).remove([ids[0]])
    with pytest.raises(ValueError, match="changed since it was read"):
        stale.swap_encoder("text", "minilm-l3", in_place=True)
    assert Retriever.load(index).manifest.counts.items == len(ids) - 1  # the update stands, the index loads


# -- the reloader, step by step --------------------------------------------------------------------------


def _search(client: TestClient, **body: Any) -> dict[str, Any]:
    res = client.post("/search", json=body)
    assert res.status_code == 200, res.text
    return res.json()


def test_reloader_swaps_in_a_new_version_and_survives_the_swap_window(index: Path, new_items: Path, caplog) -> None:
    app = create_app(Retriever.load(index))
    reloader = app.state.reloader
    with TestClient(app) as client:
        g0 = _search(client, text="a blue square")["generation"]
        assert not reloader.refresh()  # nothing new: the first check adopts the version on disk without a load
        old = reloader.retriever
        Retriever.load(index).add(new_items)  # another writer
        moved = index.with_name("moved")
        index.rename(moved)  # the window of the two-rename fallback (no renameat2): no index at the path
        assert not reloader.refresh() and reloader.retriever is old
        assert _search(client, text="a blue square")["generation"] == g0
        moved.rename(index)
        assert reloader.refresh() and reloader.retriever is not old
        body = _search(client, text="a blue square", k=100)
        assert body["generation"] == g0 + 1 and "blue-square" in {h["id"] for h in body["hits"]}
        assert client.get("/health").json()["generation"] == client.get("/info").json()["generation"] == g0 + 1
        # models are reused, not reloaded: encoder() returns the one already loaded, else loads a new one
        assert reloader.retriever.encoder("text") is old.encoder("text")

        (index / MANIFEST).write_text("{ not json")  # a version that cannot load: keep serving, warn once
        assert not reloader.refresh() and not reloader.refresh()
        assert [r.levelname for r in caplog.records if "failed to load" in r.message] == ["WARNING"]
        assert _search(client, text="a blue square")["generation"] == g0 + 1


# -- a real server under load while other processes update its index ------------------------------------


@pytest.mark.slow
def test_live_server_answers_every_request_whole_from_one_version(index: Path, new_items: Path, small_retriever,
                                                                 small_config):
    ds = load_data(small_config.data)
    gone = ds["id"][7]  # an item of the first build, removed at the end
    pngs = {"blue-square": (NEW_ITEMS / "blue-square.png").read_bytes(), gone: ds["image"][7]}
    texts = ["a blue square", "a green triangle", small_retriever.item(gone)["caption"], "a red heart"]
    seen: Counter[int] = Counter()
    bad: list[str] = []
    stop = threading.Event()
    t_start = time.perf_counter()

    with server_process(index, startup_timeout=180, args=["--reload-every", "0.2"]) as (url, proc):
        g0 = httpx.get(url + "/health").json()["generation"]
        # generation -> which of the watched ids that version holds
        holds = {g0: {gone}, g0 + 1: {gone, *ADDED}, g0 + 2: set(ADDED)}

        def check(body: dict[str, Any], query: str) -> None:
            g, found = body["generation"], {h["id"] for h in body["hits"]}
            if g not in holds:
                bad.append(f"unexpected generation {g}")
                return
            for item in (gone, *ADDED):
                if item in found and item not in holds[g]:
                    bad.append(f"{query}: {item} in an answer of generation {g}, which does not hold it")
            if query in holds[g] and body["hits"][0]["id"] != query:  # an item's own image finds it first
                bad.append(f"image of {query}: top hit {body['hits'][0]['id']} in generation {g}")
            if any(h["thumbnail"] is None for h in body["hits"]):
                bad.append(f"{query}: a hit without its thumbnail in generation {g}")
            seen[g] += 1

        def client_loop(n: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        if (i + n) % 2:
                            text = texts[i % len(texts)]
                            res, query = c.post("/search", json={"text": text, "k": 20}), text
                        else:
                            query = list(pngs)[i % len(pngs)]
                            res = c.post("/search", files={"image": ("q.png", pngs[query], "image/png")},
                                         data={"target": "image", "k": "20"})
                    except httpx.HTTPError as e:
                        bad.append(f"request failed: {type(e).__name__}: {e}")
                        continue
                    if res.status_code != 200:
                        bad.append(f"HTTP {res.status_code}: {res.text[:200]}")
                    else:
                        check(res.json(), query)

        def wait_for(g: int, timeout: float = 60) -> None:
            end = time.monotonic() + timeout
            while seen[g] < 10 and time.monotonic() < end and not bad:
                time.sleep(0.1)

        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            wait_for(g0)
            _relspace("add", str(index), str(new_items))
            wait_for(g0 + 1)
            _relspace("remove", str(index), "--ids", gone)
            wait_for(g0 + 2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert proc.poll() is None  # the same server process throughout: no restart
    wall = time.perf_counter() - t_start
    print(f"\nresponses per generation {dict(sorted(seen.items()))} in {wall:.1f} s")
    assert not bad, bad[:5]
    assert all(seen[g] >= 10 for g in holds), seen  # each version answered, old and new
