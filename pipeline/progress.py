"""Progress bars that follow the log level: shown when INFO is enabled, unless a flag says otherwise."""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

_root = logging.getLogger("pipeline")


def progress(total: int | None = None, desc: str = "", enabled: bool | None = None, **kw: object) -> tqdm:
    """A tqdm bar; ``enabled=None`` shows it only when the package logs at INFO or below."""
    if enabled is None:
        enabled = _root.getEffectiveLevel() <= logging.INFO
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, **kw)
