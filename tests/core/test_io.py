"""The one atomic file write: a reader or a crash sees the old file or the new one, whole, never a temporary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.io import atomic_write


def test_atomic_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "vectors.npy"  # the directory is made; np.save keeps the name (suffix kept)
    with atomic_write(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".") and tmp.suffix == ".npy"
        np.save(tmp, np.arange(4), allow_pickle=False)
        assert not path.exists()  # nothing is published before the block ends
    np.testing.assert_array_equal(np.load(path), np.arange(4))
    assert sorted(p.name for p in path.parent.iterdir()) == ["vectors.npy"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # shared like a plain file, not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(path) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
