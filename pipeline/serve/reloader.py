"""The loaded index a server shares between request threads: its warm-up, and live reloads after updates.

A ``relspace add``, ``remove`` or ``reanchor`` in another process publishes a new index directory atomically
(:func:`pipeline.store.publish.commit`). The reloader notices (a ``stat`` of ``manifest.json``, at most every
``reload_every`` seconds, in one background thread), loads the new version beside the old one, warms it,
and swaps one reference. A request reads that reference once and answers from that Retriever only, so each
response comes whole from one version, tagged with its manifest ``generation``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from PIL import Image

from pipeline.core.limits import Limits
from pipeline.query import Query
from pipeline.retriever import Retriever
from pipeline.store.layout import MANIFEST
from pipeline.store.manifest import Manifest

if TYPE_CHECKING:
    from pipeline.retriever import Hit

logger = logging.getLogger(__name__)

Stamp = tuple[int, int, int]  # (inode, mtime ns, size) of manifest.json: a publish writes a new file


def manifest_stamp(index_dir: os.PathLike[str] | str) -> Stamp | None:
    """Which manifest file the index path names now; None in the instant of a swap when the path is missing."""
    try:
        st = os.stat(os.path.join(index_dir, MANIFEST))
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class IndexReloader:
    """The current Retriever, shared by all request threads, with one lock per query encoder.

    FastAPI runs the search in its threadpool. FAISS search on a loaded index is thread-safe, but the text
    encoder's fast tokenizer is not (concurrent calls can fail with "Already borrowed"), and the encoders
    load lazily on first use, which must happen once. On a CPU a forward pass already uses every core, so
    serialising the forwards of one encoder costs little throughput; text and image queries still run
    side by side, as each encoder has its own lock. The locks belong to the reloader, not to a version:
    a reloaded Retriever shares the loaded encoders of the one before it.
    """

    def __init__(self, retriever: Retriever, limits: Limits | None = None):
        self.retriever = retriever  # replaced whole by a reload; read it once per request
        self.limits = limits or retriever.limits  # the server's bounds; they may differ from the library's
        self._locks = {"text": threading.Lock(), "image": threading.Lock()}
        self._stamp: Stamp | None = None  # the manifest file the current version was loaded from; None: unknown
        self._failed: Stamp | None = None  # a version that failed to load; retried only once the path changes
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def check(self, query: Query, retriever: Retriever | None = None) -> Query:
        """Validate ``query`` against the index (default the current version) and the limits (raises QueryError)."""
        return (retriever or self.retriever).check_query(query, self.limits)

    def search(self, query: Query, retriever: Retriever | None = None) -> list[Hit]:
        """Run a query on ``retriever`` (default the current version) under its encoder's lock."""
        with self._locks[query.modality]:
            return (retriever or self.retriever).search_query(query, limits=self.limits)

    def warm(self, retriever: Retriever) -> None:
        """Load the encoders and lookups of ``retriever`` and run one query of each kind, under the reloader's locks."""
        t0 = time.perf_counter()
        self.search(Query(text="warm up", k=1), retriever)
        self.search(Query(image=Image.new("RGB", (32, 32), "white"), k=1), retriever)
        retriever.item("")
        retriever.thumbnail("")
        logger.info("warmed up encoders and tables in %.1f s", time.perf_counter() - t0)

    # -- live reloads ---------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Swap in the index's new version if one was published since the current one; True if swapped.

        Never raises and never blocks a request: a version that cannot be read yet (the path is missing for
        an instant during a swap, or a file changed under the load) is left for the next call, and one that
        fails to load as published is logged once and skipped until the directory changes again.
        """
        current = self.retriever
        index_dir = current.index_dir
        stamp = manifest_stamp(index_dir)
        if stamp is None or stamp in (self._stamp, self._failed):
            return False
        try:
            if self._stamp is None and Manifest.read(index_dir).generation == current.manifest.generation:
                self._stamp = stamp  # first check: the version being served is the one on disk
                return False
            new = current.reload()  # the encoders already loaded are reused, not loaded again
            self.warm(new)
        except (OSError, ValueError) as e:  # includes FileNotFoundError, IndexMismatchError, damaged files
            if manifest_stamp(index_dir) == stamp:  # not a swap under the load: this version is unreadable
                self._failed = stamp
                logger.warning("keeping index generation %d: the new version of %s failed to load: %s",
                               current.manifest.generation, index_dir, e)
            return False
        if manifest_stamp(index_dir) != stamp:  # another version replaced it while it loaded: not whole
            return False
        self.retriever, self._stamp = new, stamp
        logger.info("reloaded %s: generation %d -> %d", index_dir, current.manifest.generation,
                    new.manifest.generation)
        return True

    def watch(self, every: float) -> None:
        """Check for a new version every ``every`` seconds in a daemon thread, until :meth:`stop`."""
        if not every > 0:
            raise ValueError(f"reload_every must be a positive number of seconds, got {every}")
        if self._watcher is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.refresh()
                except Exception:  # a reload bug must not end live updates silently
                    logger.exception("checking %s for a new version failed", self.retriever.index_dir)

        self._watcher = threading.Thread(target=loop, name="relspace-reload", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """End the watcher thread (waiting for a reload in progress)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None


def warm_up(retriever: Retriever) -> None:
    """Load both encoders, the item tables and thumbnails, and run one query of each kind.

    Called before serving so that the first user does not wait for model loading or first-call kernels.
    """
    IndexReloader(retriever).warm(retriever)
