"""The CLI driven in-process through ``main([...])``, and ``python -m pipeline`` as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Config


def test_search_json(small_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "search", str(small_index), "--text", "a red heart", "-k", "4", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 4 and {"id", "score", "modality", "caption", "metadata"} <= set(hits[0])


def test_search_image_table(small_index: Path, small_retriever, tmp_path: Path, capsys) -> None:
    item_id = small_retriever.items["image"].column("id")[0].as_py()
    (tmp_path / "q.png").write_bytes(small_retriever.thumbnail(item_id))
    assert main(["-q", "search", str(small_index), "--image", str(tmp_path / "q.png"), "-k", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and out[0].lstrip().startswith("1.")


def test_build_and_demo_reuse(small_config: Config, tmp_path: Path, capsys) -> None:
    cfg_path = tmp_path / "c.yaml"
    small_config.save(cfg_path)
    out = tmp_path / "idx"
    assert main(["-q", "build", str(cfg_path), "--out", str(out)]) == 0
    assert "160 images" in capsys.readouterr().out
    assert main(["-q", "demo", "--config", str(cfg_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reusing the index" in text and "text -> image" in text and "image -> text" in text
    assert "OpenMoji" in text and "CC BY-SA 4.0" in text


def test_eval_json(small_config: Config, tmp_path: Path, capsys) -> None:
    cfg_path = tmp_path / "c.yaml"
    small_config.save(cfg_path)
    assert main(["-q", "eval", str(cfg_path), "--json", "--anchors", "60"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["anchors"] == 60 and rep["gallery"] == 100 and rep["seeds"] == [0, 1]
    for res in [rep, *rep["baselines"].values()]:
        assert {"R@1", "R@5", "R@10", "MRR"} <= set(res["t2i"]) and {"R@1", "R@5", "R@10", "MRR"} <= set(res["i2t"])
    assert {"cosine", "asif", "procrustes", "ridge", "chance"} <= set(rep["baselines"])


def test_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["-q", "search", str(tmp_path), "--text", "x"]) == 2
    assert "not a relspace index" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("anchors:\n  cuont: 3\n")
    assert main(["-q", "build", str(bad)]) == 2
    assert "anchors.cuont" in capsys.readouterr().err


def test_python_dash_m(small_index: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "-q", "search", str(small_index), "--text", "a cat", "-k", "2", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 2
