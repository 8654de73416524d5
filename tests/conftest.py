"""Shared fixtures: one small real OpenMoji index per session, built with the bundled encoders."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Config, load_config

SMALL_ITEMS = 160
SMALL_ANCHORS = 80


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under a directory (an index's shards included) by relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session cache for rendered data and embeddings, so tests never touch the user's cache."""
    return tmp_path_factory.mktemp("relspace-cache")


@pytest.fixture(scope="session")
def small_config(cache_dir: Path) -> Config:
    """OpenMoji, a 160-item seeded sample, 80 anchors, bundled MiniLM + EfficientNet-Lite0."""
    return load_config(
        {
            "name": "small",
            "data": {"limit": SMALL_ITEMS, "cache_dir": str(cache_dir), "languages": ["en", "es"]},
            "anchors": {"count": SMALL_ANCHORS},
            "index": {"thumbnails": 64},
            "eval": {"seeds": 2},
        }
    )


@pytest.fixture(scope="session")
def small_index(small_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built index directory; treat it as read-only (copy it to modify)."""
    from pipeline import Retriever

    out = tmp_path_factory.mktemp("indexes") / "small"
    Retriever.build(small_config, out)
    return out


@pytest.fixture(scope="session")
def small_retriever(small_index: Path):
    """The loaded small index, shared: encoders load once per session."""
    from pipeline import Retriever

    return Retriever.load(small_index)
