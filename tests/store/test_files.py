"""The writer lock of an index directory (a second writer says that it waits, and for whom), the atomic
exchange of two directories, and the removal of a crashed publish's leftovers."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from pipeline.store.files import exchange, index_lock, swap_in
from pipeline.store.layout import is_leftover
from pipeline.store.publish import leftovers, tidy_if_idle


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


# -- the swap and the leftovers of a crashed publish ------------------------------------------------------------


def test_exchange_swaps_two_directories_in_one_step(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("new")
    (b / "f").write_text("old")
    if not exchange(a, b):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here: publish uses the two-rename fallback")
    assert (b / "f").read_text() == "new" and (a / "f").read_text() == "old"


def test_swap_in_leaves_the_old_version_at_the_temporary_name(tmp_path: Path) -> None:
    out, tmp = tmp_path / "idx", tmp_path / ".idx.tmp-abcdefgh"
    for d, text in ((out, "old"), (tmp, "new")):
        d.mkdir()
        (d / "f").write_text(text)
    old = swap_in(tmp, out)
    assert (out / "f").read_text() == "new" and old is not None and (old / "f").read_text() == "old"
    assert is_leftover(out, old.name)


def test_leftovers_are_removed_only_when_no_writer_holds_the_lock(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    index.mkdir()
    made = [tmp_path / n for n in (".idx.tmp-abc_1234", ".idx.old-0123abcd", ".idx.update")]
    kept = [tmp_path / n for n in (".idx.partial", ".idx.tmp-abc_1234x", ".idx2.tmp-abcdefgh", ".other.old-abcdefgh")]
    for d in made + kept:
        d.mkdir()
    assert leftovers(index) == sorted(made)
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with index_lock(index):
            holding.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    assert holding.wait(10)
    assert not tidy_if_idle(index) and all(d.exists() for d in made)  # a writer at work: its files stay
    release.set()
    t.join(10)
    assert tidy_if_idle(index)
    assert not any(d.exists() for d in made) and all(d.exists() for d in kept) and index.is_dir()
