"""Progress bars: on a terminal they refresh often; in a log file (not a terminal) twice a minute, so a long
offline build does not fill its log with tens of thousands of refreshes."""

from __future__ import annotations

import io
import os
import sys

import pytest

from pipeline.core.progress import LOG_INTERVAL, TERMINAL_INTERVAL, progress


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
