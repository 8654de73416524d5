"""``RayEngine(address="auto")`` with no cluster running fails in one line that says what to run; no cluster is
started (a fresh interpreter whose Ray temp directory is empty, so no other session's cluster is found).

The file name sorts before test_ray.py on purpose: that module's session cluster, once up, is found at 'auto'
whatever RAY_TMPDIR says, and connecting to it is then the right answer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

SCRIPT = """
from pipeline import RayEngine
try:
    RayEngine(address="auto").connect()
except RuntimeError as e:
    print(e)
else:
    print("connected")
"""


def test_no_cluster_at_auto_says_to_run_ray_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1 and "ray start --head" in lines[0] and "'auto'" in lines[0], run.stdout
    assert "Traceback" not in run.stderr
