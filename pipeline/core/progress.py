"""Progress bars that follow the log level: shown when INFO is enabled, unless a flag says otherwise."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

_root = logging.getLogger("pipeline")


# Off a terminal (an offline build's log file, a CI log) every refresh stays in the file: a bar refreshed ten
# times a second writes tens of thousands of updates an hour, so it is refreshed twice a minute there instead.
TERMINAL_INTERVAL = 0.1
LOG_INTERVAL = 30.0
# In Jupyter, tqdm.auto draws a widget in place, though stderr is no terminal there.
_NOTEBOOK = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)


def progress(total: int | None = None, desc: str = "", enabled: bool | None = None, **kw: object) -> tqdm:
    """A tqdm bar; ``enabled=None`` shows it only when the package logs at INFO or below."""
    if enabled is None:
        enabled = _root.getEffectiveLevel() <= logging.INFO
    kw.setdefault("mininterval", TERMINAL_INTERVAL if _NOTEBOOK or sys.stderr.isatty() else LOG_INTERVAL)
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, **kw)
