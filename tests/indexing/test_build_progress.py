"""A build from the Python API shows its progress with nothing configured: one bar over every item of every
shard, and encoding bars that name their language."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import Retriever
from pipeline.config import load_config
from pipeline.core.progress import enable_progress_bars
from pipeline.indexing.engines.local import OVERALL
from pipeline.indexing.stream import stage_shares


def test_the_stages_of_a_block_share_its_items_whole() -> None:
    shares = stage_shares(1914, {"en": 1914, "es": 1900, "ja": 0})
    assert sum(shares.values()) == 1914
    assert shares[min(shares, key=str)] > shares[max(shares, key=str)]  # an image costs more than a caption
    assert sum(stage_shares(3, {lang: 7 for lang in "abcdefghi"}).values()) == 3


@pytest.mark.slow
def test_a_tiny_build_shows_one_overall_bar_and_named_encodings(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    enable_progress_bars()  # whatever an in-process `-q` of another test left
    cfg = load_config({"name": "tiny", "shard_size": 10, "anchors": {"count": 12},
                       "data": {"limit": 24, "cache_dir": str(cache_dir), "languages": ["en", "es"]}})
    Retriever.build(cfg, tmp_path / "tiny")
    err = capsys.readouterr().err
    assert f"{OVERALL}:" in err and "0/24" in err  # one bar over the 24 items of the three shards
    assert "encode anchors text:es (minilm)" in err
    assert "encode anchors image (efficientnet-lite0)" in err
