"""The 🤗 hub, reached only when needed: fail fast on a model or dataset that can be had neither locally nor from it.

Without this, an unknown name costs a minute and a half of retries when there is no network, and ends in
a traceback about connections. Names already in the local 🤗 cache load as usual, so offline users with
a warm cache are not affected.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0  # seconds for the name lookup and TCP connect together
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as the 🤗 libraries read it."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in TRUE_VALUES


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@functools.lru_cache(maxsize=4)
def hub_reachable(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the hub endpoint opens within ``timeout`` (name lookup included)."""
    url = urlparse(endpoint or hub_endpoint())
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    # A thread, because a hanging name lookup ignores the socket timeout.
    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def in_hub_cache(repo_id: str, filename: str = "config.json") -> bool:
    """Whether ``repo_id`` has ``filename`` in the local 🤗 cache (an invalid repo id is simply not there)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # HFValidationError and friends: not a repo id, so not cached
        return False


def require_model(name: str, candidates: Sequence[str], what: str) -> None:
    """Raise ValueError at once when ``name`` is no local directory, not cached, and cannot be downloaded.

    Args:
        name: the name as the user wrote it.
        candidates: the hub repo ids the loading library would try for it.
        what: the kind of model, for the message.
    """
    if Path(name).expanduser().is_dir():
        return
    if name.startswith(("/", "./", "../", "~")):
        raise ValueError(f"{what} directory not found: {name}")
    if any(in_hub_cache(c) for c in candidates):
        return
    hint = "give a local model directory or a bundled alias (relspace lists them: pipeline.list_encoders())"
    if hub_offline():
        raise ValueError(f"no local {what} {name!r} (not a directory, not in the Hugging Face cache) and "
                         f"HF_HUB_OFFLINE is set; {hint}")
    endpoint = hub_endpoint()
    if not hub_reachable(endpoint):
        raise ValueError(f"no local {what} {name!r} (not a directory, not in the Hugging Face cache) and no "
                         f"network: {urlparse(endpoint).hostname} cannot be reached; {hint}")
    logger.info("%s %r is not cached locally: it will be downloaded from %s", what, name, endpoint)
