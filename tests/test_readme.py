"""The README's commands and snippets, run as written against the indexes they name (the nine-language demo)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# Commands of the README's command-line block that are not run here, and why.
NOT_RUN = {
    "build": "the Python API block builds the same index with the same config",
    "eval": "minutes on the full demo; tests/evaluate/test_evaluate.py runs eval on small data",
    "sweep": "many evals; tests/evaluate/test_evaluate.py runs a sweep on small data",
    "serve": "runs until interrupted; tests/serve/test_serve.py serves the API",
    "demo": "the fixture below runs it first, as the Quick start does",
}

pytestmark = pytest.mark.slow


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[Path]:
    """A fresh directory with the repo's configs and docs, where `relspace demo` has built indexes/openmoji."""
    work = tmp_path_factory.mktemp("readme")
    for name in ("configs", "docs"):
        (work / name).symlink_to(ROOT / name)
    old_cwd, old_cache = Path.cwd(), os.environ.get("RELSPACE_CACHE")
    os.chdir(work)
    os.environ["RELSPACE_CACHE"] = str(cache_dir)
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["-q", "demo"]) == 0
        (work / "demo-output.txt").write_text(out.getvalue())
        yield work
    finally:
        os.chdir(old_cwd)
        if old_cache is None:
            os.environ.pop("RELSPACE_CACHE", None)
        else:
            os.environ["RELSPACE_CACHE"] = old_cache


def test_quick_start_commands_are_the_ones_ci_runs() -> None:
    quick = blocks(section("Quick start (a fresh machine, offline)"), "bash")[0]
    assert "relspace demo" in quick
    test_command = next(line for line in quick.splitlines() if "pytest" in line)
    assert test_command.strip() in (ROOT / ".ci" / "run").read_text()


def demo_results(text: str) -> dict[str, list[tuple[str, float]]]:
    """The demo's printed searches: each query's heading, and its hits as (id, score) in rank order."""
    results: dict[str, list[tuple[str, float]]] = {}
    hits: list[tuple[str, float]] = []
    for line in text.splitlines():
        if line.startswith(("text -> image", "image -> text")):
            hits = results.setdefault(line.split("  ")[1] if line.startswith("text") else "image query", [])
        elif m := re.match(r"\s*\d+\.\s+(-?[\d.]+)\s+(?:image|text)\s+(\S+)", line):
            hits.append((m[2], float(m[1])))
    return results


def test_quick_start_shows_the_demos_real_output(workdir: Path) -> None:
    """The output the README shows is what this code prints: the same hits in the same ranks for every query.

    Scores may differ across machines in the last digits, so ranks are compared, and two hits whose shown scores
    are within 0.002 of each other may trade places.
    """
    shown = demo_results(blocks(section("Quick start (a fresh machine, offline)"), "text")[0])
    printed = demo_results((workdir / "demo-output.txt").read_text())
    assert len(shown) == 7 and {"'a red apple'", "'a rocket'", "image query"} <= set(shown)
    assert set(shown) == set(printed)
    for query, hits in shown.items():
        got = printed[query]
        assert {i for i, _ in got} == {i for i, _ in hits}, query
        for (want, score), (have, _) in zip(hits, got):
            assert want == have or any(abs(s - score) <= 0.002 for i, s in hits if i == have), (query, want, have)


def test_demo_index_carries_the_nine_languages(workdir: Path) -> None:
    from pipeline import Retriever, load_config
    from pipeline.config import Config

    r = Retriever.load(workdir / "indexes" / "openmoji")
    assert r.languages == ["en", "es", "fr", "de", "it", "pt", "ja", "zh", "ru"]
    assert r.caption_languages == r.languages  # the build's order, the primary first (not sorted)
    assert load_config(ROOT / "configs" / "openmoji.yaml").to_dict() == Config().to_dict()


def test_python_api_snippets_run_as_written(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict = {}
    for code in blocks(section("Python API"), "python"):
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    assert "text encoder mismatch" in out
    r, l3 = namespace["r"], namespace["l3"]
    assert namespace["hits"][0].modality == "image" and "char" in namespace["hits"][0].metadata
    assert {h.lang for h in r.search(image="docs/query.png", result_lang="fr")} == {"fr"}
    assert r.search(text="una manzana roja", lang="es")
    assert l3.encoder("text").spec == "minilm-l3" and r.encoder("text").spec == "minilm"
    assert (workdir / "indexes" / "openmoji-l3" / "manifest.json").is_file()


def test_command_line_block_runs_as_written(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [line for line in blocks(section("Command line"), "bash")[0].splitlines() if line.strip()]
    ran = 0
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "relspace", line
        if argv[1] in NOT_RUN:
            continue
        if argv[1] == "reanchor":  # the Python block wrote this destination already
            argv[argv.index("--out") + 1] += "-cli"
        assert main(["-q", *argv[1:]]) == 0, line
        assert capsys.readouterr().out.strip(), line
        ran += 1
    assert ran >= 4
