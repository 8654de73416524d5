"""The writer lock of an index directory: a second writer says that it waits, and for whom."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from pipeline.store.files import index_lock


def test_a_waiting_writer_logs_who_holds_the_lock(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    index = tmp_path / "idx"
    held, release, order = threading.Event(), threading.Event(), []

    def holder() -> None:
        with index_lock(index):
            order.append("holder")
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    threading.Timer(0.5, release.set).start()
    with caplog.at_level(logging.INFO, logger="pipeline.store.files"), index_lock(index):
        order.append("waiter")
    t.join(10)
    assert order == ["holder", "waiter"]  # the lock still excludes
    waits = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(waits) == 1, caplog.text
    assert f"{index.resolve()} is locked by pid " in waits[0].getMessage()
    assert "waiting for it to finish" in waits[0].getMessage()
    assert any("got the lock" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_an_uncontended_lock_is_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline.store.files"), index_lock(tmp_path / "idx"):
        pass
    assert not caplog.records
