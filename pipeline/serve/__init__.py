"""HTTP service for a relspace index: a JSON search API and a search page (``relspace serve``).

Only this subpackage imports fastapi and uvicorn, so ``import pipeline`` stays light.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.core.limits import Limits  # re-exported: the one home of every bound is pipeline.core.limits

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pipeline.retriever import Retriever

__all__ = ["Limits", "create_app", "serve"]

logger = logging.getLogger(__name__)


def create_app(retriever: Retriever, *, limits: Limits | None = None, reload_every: float | None = None) -> FastAPI:
    """Build the FastAPI app around a loaded Retriever (see :func:`pipeline.serve.app.create_app`).

    Args:
        retriever: the loaded index, shared by all requests.
        limits: request bounds; default the retriever's own (:class:`Limits()` unless it was given others).
        reload_every: seconds between checks for a new version of the index on disk; None never reloads.

    Returns:
        The app, ready for uvicorn or ``fastapi.testclient.TestClient``.
    """
    from .app import create_app as _create_app

    return _create_app(retriever, limits=limits, reload_every=reload_every)


def serve(
    index_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    *,
    limits: Limits | None = None,
    max_connections: int = 64,
    warm: bool = True,
    log_level: str | None = None,
    reload_every: float | None = 0.5,
    verify: bool = False,
) -> None:
    """Load an index once and serve it with uvicorn until interrupted.

    One process holds one Retriever: run a single worker (the models are not shared across processes)
    and scale with more processes behind a proxy if needed.

    Args:
        index_dir: a directory written by ``relspace build``.
        host: interface to bind; the default serves this machine only.
        port: TCP port.
        device: torch device for the query encoders.
        limits: request bounds; default the retriever's own (:class:`Limits()` unless it was given others).
        max_connections: concurrent connections before uvicorn answers 503, so a burst queues boundedly.
        warm: load both encoders and run one query of each kind before accepting requests.
        log_level: uvicorn's log level (access lines show at "info"); default follows the ``pipeline``
            logger, so ``relspace -q serve`` is quiet.
        reload_every: seconds between checks for a new version published by ``relspace add``, ``remove``
            or ``reanchor`` (a ``stat``); it is loaded in the background and swapped in without a restart.
            None or 0 serves the version loaded at start until the process ends.
        verify: check every file's checksum and every stored vector's norm before serving, refusing a damaged
            index (``relspace verify``); a load always checks sizes.
    """
    import uvicorn

    from ..retriever import Retriever
    from .app import warm_up

    retriever = Retriever.load(index_dir, device=device, limits=limits, verify=verify)
    if warm:
        warm_up(retriever)
    app = create_app(retriever, limits=limits, reload_every=reload_every)
    if not _is_loopback(host):
        logger.warning("serving on %s: anyone who can reach this address can query the index (no auth)", host)
    logger.info("serving %s on http://%s:%d (docs at /docs)", index_dir, host, port)
    if log_level is None:
        level = logging.getLogger("pipeline").getEffectiveLevel()
        log_level = "debug" if level <= logging.DEBUG else "info" if level <= logging.INFO else "warning"
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        limit_concurrency=max_connections,
        timeout_keep_alive=5,
        log_level=log_level,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
