"""Bounds the server keeps across requests and before parsing: pixels decoded at once, and JSON nesting."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator

import numpy as np

from .errors import ApiError

logger = logging.getLogger(__name__)

# A JSON string, escapes included: removed before the brackets are counted, so "[[[" inside a string is text.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in ``body``, counted without parsing it.

    Python's parser recurses once per level: 100,000 levels raise RecursionError (a 500 that also cost the
    connection). Counting is linear and in C (a regex and a cumulative sum), ~20 ms for the 8 MB body cap.
    In a valid JSON prefix every quote opens or closes a string, so the count is exact up to the point where
    the parser would fail; for invalid JSON it may overcount, and such a body is refused either way.
    """
    codes = np.frombuffer(_JSON_STRING.sub(b"", body), np.uint8)
    steps = np.isin(codes, _OPEN).astype(np.int32) - np.isin(codes, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def check_json_depth(body: bytes, max_depth: int) -> None:
    """Refuse a body nested deeper than ``max_depth`` with 400, before ``json.loads`` sees it."""
    depth = json_depth(body)
    if depth > max_depth:
        raise ApiError(400, f"request body is JSON nested {depth} levels deep; the limit is {max_depth}")


class PixelBudget:
    """Pixels the server may hold decoded at once, summed over concurrent requests; the per-image rule alone
    bounds one request, this bounds them all (``Limits.max_inflight_pixels``).

    A request that would pass the budget waits up to ``wait_s`` for others to finish, then gets 503 with a
    Retry-After: a short burst queues, a flood is refused rather than grown into. Thread-safe: decoding runs
    in Starlette's thread pool.
    """

    def __init__(self, capacity: int, wait_s: float):
        self.capacity, self.wait_s = capacity, wait_s
        self.in_use = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the budget for the block (more than the whole budget is charged the whole)."""
        pixels = min(pixels, self.capacity)
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self.in_use + pixels > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left) and self.in_use + pixels > self.capacity:
                    logger.warning("pixel budget full: %d of %d pixels in flight, refused %d", self.in_use,
                                   self.capacity, pixels)
                    raise ApiError(503, f"the server is decoding {self.capacity} pixels of other images, its limit; "
                                        f"retry in a moment", headers={"Retry-After": "1"})
            self.in_use += pixels
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= pixels
                self._cond.notify_all()
