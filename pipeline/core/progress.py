"""Progress bars: on by default, as 🤗 datasets' are, off with one call or one environment variable.

A build is long and a first user watches it from the Python API, where nothing configures logging: bars that
followed the log level stayed hidden there. So bars show unless :func:`disable_progress_bars` was called or
``RELSPACE_DISABLE_PROGRESS_BARS`` is set (the CLI's ``-q`` calls it).

A long job shows one overall bar (:func:`progress`) and names the work inside it with :func:`stage`: the inner
bars then read ``encode text:es (minilm)``, and each encoded batch (:func:`advance`) moves the overall bar by
its share of the items, so its ETA moves per batch rather than per shard.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from tqdm.auto import tqdm

DISABLE_ENV = "RELSPACE_DISABLE_PROGRESS_BARS"

# Off a terminal (an offline build's log file, a CI log) every refresh stays in the file: a bar refreshed ten
# times a second writes tens of thousands of updates an hour, so it is refreshed twice a minute there instead.
TERMINAL_INTERVAL = 0.1
LOG_INTERVAL = 30.0
# In Jupyter, tqdm.auto draws a widget in place, though stderr is no terminal there.
_NOTEBOOK = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)

_disabled: bool | None = None  # set by disable/enable_progress_bars; None: the environment variable decides


def disable_progress_bars() -> None:
    """Hide every relspace progress bar from now on (the CLI's ``-q``)."""
    global _disabled
    _disabled = True


def enable_progress_bars() -> None:
    """Show relspace's progress bars again, whatever ``RELSPACE_DISABLE_PROGRESS_BARS`` says."""
    global _disabled
    _disabled = False


def are_progress_bars_disabled() -> bool:
    """Whether bars are off: by a call above, else by ``RELSPACE_DISABLE_PROGRESS_BARS`` set to a true value."""
    if _disabled is not None:
        return _disabled
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def progress(total: int | None = None, desc: str = "", enabled: bool | None = None, **kw: object) -> tqdm:
    """A tqdm bar, shown unless bars are disabled or ``enabled=False``; refreshed rarely off a terminal."""
    show = enabled is not False and not are_progress_bars_disabled()
    kw.setdefault("mininterval", TERMINAL_INTERVAL if _NOTEBOOK or sys.stderr.isatty() else LOG_INTERVAL)
    return tqdm(total=total, desc=desc, disable=not show, leave=False, dynamic_ncols=True, **kw)


@dataclass
class _Stage:
    what: str
    bar: tqdm | None
    rows: int  # the rows this stage encodes
    items: int  # what they are worth on the overall bar
    done: int = 0
    credited: int = 0  # whole items given to the bar so far

    def advance(self, rows: int) -> None:
        self.done = min(self.rows, self.done + max(0, rows))  # an ensemble encodes its rows once per member
        owed = self.items * self.done // self.rows if self.rows else 0
        if self.bar is not None and owed > self.credited:
            self.bar.update(owed - self.credited)
        self.credited = max(self.credited, owed)


_STAGE: ContextVar[_Stage | None] = ContextVar("relspace_progress_stage", default=None)


@contextmanager
def stage(what: str, *, bar: tqdm | None = None, rows: int = 0, items: int = 0) -> Iterator[None]:
    """Name the work inside (``what``: ``image``, ``text:es``) and count its ``rows`` as ``items`` of ``bar``.

    When the stage ends, whatever its batches did not report (rows served from the embedding cache) is added,
    so the overall bar always reaches its total.
    """
    current = _Stage(what, bar, rows, items)
    token = _STAGE.set(current)
    if bar is not None:
        bar.set_postfix_str(what, refresh=False)
    try:
        yield
    finally:
        _STAGE.reset(token)
    current.advance(rows)
    if bar is not None and current.credited < items:  # a stage of no rows still owes its items
        bar.update(items - current.credited)


def advance(rows: int) -> None:
    """Report ``rows`` encoded to the enclosing :func:`stage`, if any (every encoder's batch loop calls it)."""
    current = _STAGE.get()
    if current is not None:
        current.advance(rows)


def encode_desc(modality: str, spec: str) -> str:
    """An encoding bar's label: ``encode text:es (minilm)`` inside a stage that names the language."""
    current = _STAGE.get()
    return f"encode {current.what if current is not None else modality} ({spec})"
