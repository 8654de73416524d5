"""The CLI driven in-process through ``main([...])``, and ``python -m pipeline`` as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Config

from .conftest import folder_config


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


def test_demo_of_a_folder_index_shows_no_openmoji_notice(small_config: Config, folders, tmp_path: Path,
                                                         capsys) -> None:
    """The notice printed is the index's own source's (from the registry): a user's folder has none."""
    cfg_path = tmp_path / "folder.yaml"
    folder_config(small_config, folders["b"], anchors={"count": 30}).save(cfg_path)
    out = tmp_path / "idx"
    assert main(["-q", "build", str(cfg_path), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["-q", "demo", "--config", str(cfg_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reusing the index" in text and "text -> image" in text
    assert "OpenMoji" not in text and "CC BY" not in text and "License" not in text


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


@pytest.mark.slow  # a subprocess or repeated builds: the full suite's
def test_python_dash_m(small_index: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "-q", "search", str(small_index), "--text", "a cat", "-k", "2", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 2


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("relspace: error: ")
    return lines[0]


def test_search_huge_image_is_one_line_exit_2(small_index: Path, tmp_path: Path, capsys) -> None:
    """A 20000x20000 PNG (a few bytes, header only) names the limit; PIL's bomb message never shows."""
    from .bomb import HUGE_MESSAGE, png_header

    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(20_000, 20_000))
    assert main(["-q", "search", str(small_index), "--image", str(huge)]) == 2
    line = _error_line(capsys)
    assert "the query image" in line and HUGE_MESSAGE in line and "bomb" not in line.lower()


@pytest.mark.parametrize("size", [(100_000, 1), (1, 100_000), (30_000, 2)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_search_thin_image_is_one_line_exit_2(small_index: Path, tmp_path: Path, capsys, size) -> None:
    """A 370-byte 100000x1 PNG passed the pixel limit and the encoder's resize took gigabytes."""
    from .bomb import png_header

    thin = tmp_path / "thin.png"
    thin.write_bytes(png_header(*size))
    assert main(["-q", "search", str(small_index), "--image", str(thin)]) == 2
    line = _error_line(capsys)
    assert "the query image" in line and str(thin) in line and "the limit is 50:1" in line
    assert f"is {size[0]}x{size[1]}, an aspect ratio of" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text", "cat", "-k", str(10**9)], "k must be an integer between 1 and 100, got 1000000000"),
        (["--text", "cat", "-k", "0"], "between 1 and 100, got 0"),
        (["--text", "a" * 1_000_000], "text has 1000000 characters; the limit is 1000"),
        (["--text", "\u200b\u200c"], "text has no visible character (only U+200B U+200C"),
    ],
    ids=["k-huge", "k-zero", "text-1MB", "zero-width"],
)
def test_search_rules_as_the_api(small_index: Path, capsys, args: list[str], message: str) -> None:
    assert main(["-q", "search", str(small_index), *args]) == 2
    assert message in _error_line(capsys)


@pytest.mark.parametrize(("args", "message"), [
    (["--engine", "local", "--num-actors", "2"], "the local engine has no option 'num_actors'"),
    (["--engine", "local", "--address", "auto"], "the local engine has no option 'address'"),
])
def test_ray_options_need_the_ray_engine(small_config: Config, tmp_path: Path, capsys, args, message) -> None:
    """Engine options are refused, by name, where the engine does not take them, before anything is built."""
    path = tmp_path / "small.yaml"
    small_config.save(path)
    assert main(["build", str(path), "--out", str(tmp_path / "never"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_engines_are_a_registry() -> None:
    from pipeline.indexing.engines import ENGINES, make_engine

    assert ENGINES.names() == ["local", "ray"]
    with pytest.raises(ValueError, match="unknown engine 'spark'; known: local, ray"):
        make_engine("spark")
    engine = make_engine("ray", num_actors=3, actor_cpus=None)  # None options keep the defaults
    assert (engine.num_actors, engine.actor_cpus) == (3, 1.0)
    assert make_engine(engine) is engine


def test_global_options_work_after_the_command(tmp_path: Path, capsys) -> None:
    """-v and -q are accepted after the command too, and one given before it is not reset by the command."""
    from pipeline.cli import build_parser

    args = build_parser().parse_args(["search", str(tmp_path), "--text", "x", "-q", "-v"])
    assert args.quiet and args.verbose == 1
    args = build_parser().parse_args(["-q", "--device", "cpu", "search", str(tmp_path), "--text", "x"])
    assert args.quiet and args.device == "cpu" and args.verbose == 0
    assert main(["search", str(tmp_path), "--text", "x", "-v"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_one_line_errors_name_no_class_unless_a_bug() -> None:
    from pipeline.cli.main import _one_line

    assert _one_line(RuntimeError("the index at X is being written")) == "the index at X is being written"
    assert _one_line(OSError("disk full")) == "disk full"
    bug = _one_line(KeyError("counts"))
    assert bug.startswith("KeyError: 'counts'") and "report it" in bug
    assert _one_line(RuntimeError()).startswith("RuntimeError")


def test_a_closed_pipe_is_no_traceback(small_index: Path) -> None:
    """``relspace info X --json | head`` ended in BrokenPipeError; the reader leaving is no error to report."""
    code = ("import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1); from pipeline.cli import main; "
            f"sys.exit(main(['-q', 'info', {str(small_index)!r}, '--json']))")  # stdout: a pipe nobody reads
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr
