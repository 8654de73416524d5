"""A writer killed at any step of a publish leaves a complete index at its path, and the next write no leftover.

Each operation (a build over an existing index, add, remove, reanchor) runs as ``python -m pipeline ...`` with
``RELSPACE_FAULT=publish:<point>``, which ends the process with ``os._exit(137)`` (as ``kill -9`` would) at that
step of :func:`pipeline.store.publish.commit`, for every point. Afterwards the path must load and hold the old
version (killed before the exchange) or the new one (after it; ``between-renames`` forces the two-rename fallback
and is recovered on open), and the next write must remove what the killed one left.

The remove runs (no model loads) are the fast lane; the other operations load encoders and are slow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline import Retriever
from pipeline.config import Config, load_config
from pipeline.core.spaces import SpaceKey
from pipeline.store.info import index_info
from pipeline.store.layout import lock_file, partial_dir
from pipeline.store.publish import FAULT_ENV, FAULT_POINTS, leftovers

ROOT = Path(__file__).resolve().parents[2]
NEW_ITEMS = ROOT / "docs" / "new-items"
AFTER_SWAP = {"between-renames", "after-exchange", "before-cleanup", "after-cleanup"}  # the new version stands
TEXT = SpaceKey("text")
TINY, REBUILT = 40, 30  # items of the module's index, and of the build that replaces it


def tiny_config(small_config: Config, limit: int) -> Config:
    return load_config({"name": "tiny", "shard_size": 20, "anchors": {"count": 16}, "index": {"thumbnails": 0},
                        "data": {"limit": limit, "languages": ["en", "es"], "cache_dir": small_config.data.cache_dir}})


@pytest.fixture(scope="module")
def tiny(small_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-item index, built once; each run works on a copy."""
    out = tmp_path_factory.mktemp("tiny") / "tiny"
    Retriever.build(tiny_config(small_config, TINY), out)
    return out


@pytest.fixture(scope="module")
def inputs(small_config: Config, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The rebuild's config (fewer items, so the versions differ) and docs/new-items' config, as files."""
    root = tmp_path_factory.mktemp("fault-inputs")
    tiny_config(small_config, REBUILT).save(root / "rebuild.yaml")
    cfg = yaml.safe_load((ROOT / "configs" / "new-items.yaml").read_text())
    cfg["data"].update(path=str(NEW_ITEMS), cache_dir=small_config.data.cache_dir)
    (root / "new-items.yaml").write_text(yaml.safe_dump(cfg))
    return {"rebuild": root / "rebuild.yaml", "add": root / "new-items.yaml"}


def signature(index: Path) -> tuple[int, str]:
    """What tells the versions apart: the item count (build, add, remove) and the text encoder (reanchor)."""
    r = Retriever.load(index)  # fails if the path holds no complete index
    return len(r.items["image"]), r.manifest.encoders[TEXT].spec


def run_with_fault(op: str, point: str, tiny: Path, inputs: dict[str, Path], tmp_path: Path) -> None:
    index = tmp_path / "idx"
    shutil.copytree(tiny, index)
    old = signature(index)
    first = Retriever.load(index).items["image"].column("id")[0].as_py()
    args = {"build": ["build", str(inputs["rebuild"]), "--out", str(index)],
            "add": ["add", str(index), str(inputs["add"])],
            "remove": ["remove", str(index), "--ids", first],
            "reanchor": ["reanchor", str(index), "--text-encoder", "minilm-l3", "--in-place"]}[op]
    new = {"build": (REBUILT, old[1]), "add": (old[0] + 2, old[1]), "remove": (old[0] - 1, old[1]),
           "reanchor": (old[0], "")}[op]  # "": another text encoder than the old one
    done = subprocess.run([sys.executable, "-m", "pipeline", "-q", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, FAULT_ENV: f"publish:{point}"}, timeout=300)
    assert done.returncode == 137, f"the fault at {point} was not reached:\n{done.stderr[-2000:]}"
    if point == "between-renames":
        assert not index.exists()  # the fallback's window: only recovery brings an index back
    got, want = signature(index), new if point in AFTER_SWAP else old
    assert got[0] == want[0] and (got[1] == want[1] if want[1] else got[1] != old[1]), (point, got, want)
    # The next writer removes what the killed one left (a partial build stays: a resumed build needs it).
    Retriever.load(index).remove([Retriever.load(index).items["image"].column("id")[-1].as_py()])
    assert not leftovers(index), point
    assert {p.name for p in tmp_path.iterdir()} <= {index.name, lock_file(index).name, partial_dir(index).name}
    assert signature(index)[0] == (new if point in AFTER_SWAP else old)[0] - 1


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_a_remove_killed_at_any_step_leaves_a_complete_index(point: str, tiny: Path, inputs, tmp_path: Path) -> None:
    run_with_fault("remove", point, tiny, inputs, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("point", FAULT_POINTS)
@pytest.mark.parametrize("op", ["build", "add", "reanchor"])
def test_every_operation_killed_at_any_step_leaves_a_complete_index(op: str, point: str, tiny: Path, inputs,
                                                                     tmp_path: Path) -> None:
    run_with_fault(op, point, tiny, inputs, tmp_path)


def test_info_and_load_restore_and_clean_after_a_crash_between_renames(tiny: Path, inputs, tmp_path: Path) -> None:
    """The reader's side of recovery: ``relspace info`` restores the newest version and removes the rest."""
    index = tmp_path / "idx"
    shutil.copytree(tiny, index)
    first = Retriever.load(index).items["image"].column("id")[0].as_py()
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline", "-q", "remove", str(index), "--ids", first], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, FAULT_ENV: "publish:between-renames"},
                          timeout=300)
    assert done.returncode == 137, done.stderr[-2000:]
    assert not index.exists() and len(leftovers(index)) == 2, time.perf_counter() - t0  # old and new, both whole
    assert index_info(index)["counts"]["items"] == TINY - 1  # the newest restored
    assert not leftovers(index)
