"""The one loaded Retriever a server shares between request threads, and its warm-up before the first request."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from PIL import Image

from pipeline.limits import Limits
from pipeline.query import Query

if TYPE_CHECKING:
    from pipeline.retriever import Hit, Retriever

logger = logging.getLogger(__name__)


class SearchEngine:
    """The one loaded Retriever, shared by all request threads, with one lock per query encoder.

    FastAPI runs the search in its threadpool. FAISS search on a loaded index is thread-safe, but the text
    encoder's fast tokenizer is not (concurrent calls can fail with "Already borrowed"), and the encoders
    load lazily on first use, which must happen once. On a CPU a forward pass already uses every core, so
    serialising the forwards of one encoder costs little throughput; text and image queries still run
    side by side, as each encoder has its own lock.
    """

    def __init__(self, retriever: Retriever, limits: Limits | None = None):
        self.retriever = retriever
        self.limits = limits or retriever.limits  # the server's bounds; they may differ from the library's
        self._locks = {"text": threading.Lock(), "image": threading.Lock()}

    def check(self, query: Query) -> Query:
        """Validate ``query`` against the index and the server's limits (raises QueryError)."""
        return self.retriever.check_query(query, self.limits)

    def search(self, query: Query) -> list[Hit]:
        """Run a query under its encoder's lock."""
        with self._locks[query.modality]:
            return self.retriever.search_query(query, limits=self.limits)


def warm_up(retriever: Retriever) -> None:
    """Load both encoders, the item tables and thumbnails, and run one query of each kind.

    Called before serving so that the first user does not wait for model loading or first-call kernels.
    """

    t0 = time.perf_counter()
    retriever.search(text="warm up", k=1)
    retriever.search(image=Image.new("RGB", (32, 32), "white"), k=1)
    retriever.item("")
    retriever.thumbnail("")
    logger.info("warmed up encoders and tables in %.1f s", time.perf_counter() - t0)
