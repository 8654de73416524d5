"""Progress bars: on a terminal they refresh often; in a log file (not a terminal) twice a minute, so a long
offline build does not fill its log with tens of thousands of refreshes."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from tqdm.auto import tqdm

import pipeline.core.progress as progress_module
from pipeline.core.progress import (
    DISABLE_ENV,
    LOG_INTERVAL,
    TERMINAL_INTERVAL,
    advance,
    are_progress_bars_disabled,
    disable_progress_bars,
    enable_progress_bars,
    encode_desc,
    progress,
    stage,
)


def test_a_bar_in_a_log_file_refreshes_rarely(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    with progress(total=1000, desc="encode", enabled=True) as bar:
        assert bar.mininterval == LOG_INTERVAL
        for _ in range(1000):
            bar.update(1)
    assert log.getvalue().count("\r") <= 3  # the first draw and the close, not one a step


def test_a_bar_on_a_terminal_refreshes_often(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = os.openpty()  # a real terminal
    with os.fdopen(slave, "w") as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        with progress(total=10, desc="encode", enabled=True) as bar:
            assert bar.mininterval == TERMINAL_INTERVAL
    os.close(master)


def test_an_explicit_interval_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress(total=1, enabled=True, mininterval=5.0) as bar:
        assert bar.mininterval == 5.0


# -- on by default, off by one call or one variable -------------------------------------------------------------

SCRIPT = """
import logging, sys
import pipeline
from pipeline.core.progress import progress
if sys.argv[1] == "call":
    pipeline.disable_progress_bars()
with progress(total=24, desc="embed items") as bar:
    bar.update(24)
"""


def _bar_output(mode: str, **env: str) -> str:
    """stderr of a fresh interpreter that draws one bar, with nothing configuring logging."""
    clean = {k: v for k, v in os.environ.items() if k != DISABLE_ENV}
    run = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60,
                         env={**clean, **env})
    assert run.returncode == 0, run.stderr
    return run.stderr


def test_bars_show_with_no_logging_configured() -> None:
    assert "embed items" in _bar_output("default")


def test_one_call_or_the_variable_turns_them_off() -> None:
    assert "embed items" not in _bar_output("call")
    assert "embed items" not in _bar_output("default", **{DISABLE_ENV: "1"})
    assert "embed items" in _bar_output("default", **{DISABLE_ENV: "0"})


def test_enable_overrides_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, "1")
    try:
        assert are_progress_bars_disabled()
        enable_progress_bars()
        assert not are_progress_bars_disabled()
        disable_progress_bars()
        assert progress(total=1).disable
    finally:
        progress_module._disabled = None
    assert are_progress_bars_disabled()  # back to what the variable says


# -- one overall bar, moved by the stages inside it ---------------------------------------------------------


def _bar(total: int) -> tqdm:
    return tqdm(total=total, file=io.StringIO(), mininterval=0)


def test_an_overall_bar_moves_per_batch_and_reaches_its_total() -> None:
    bar = _bar(10)
    with stage("image", bar=bar, rows=10, items=7):
        assert encode_desc("image", "efficientnet-lite0") == "encode image (efficientnet-lite0)"
        advance(5)
        assert bar.n == 3  # half the rows: 3 of the stage's 7 items, in whole items
        advance(50)  # an ensemble's second member: never past the stage's share
        assert bar.n == 7
    with stage("text:es", bar=bar, rows=40, items=3):
        assert encode_desc("text", "minilm") == "encode text:es (minilm)"
        # no batch reported: the captions came from the embedding cache
    assert bar.n == 10
    assert encode_desc("text", "minilm") == "encode text (minilm)"  # outside any stage


def test_a_failed_stage_does_not_count_as_done() -> None:
    bar = _bar(10)
    with pytest.raises(RuntimeError), stage("image", bar=bar, rows=10, items=10):
        advance(2)
        raise RuntimeError("model failed")
    assert bar.n == 2
