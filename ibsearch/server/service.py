"""The server's library: opened once, used from one thread of its own, kept in step with other processes.

A :class:`~ibsearch.library.LibraryResources` holds one SQLite connection, which belongs to the thread that
opened it, and the model, whose towers stay loaded once used. :class:`LibraryService` therefore
opens the library on a single worker thread and runs every piece of work that touches it there, in
turn; the event loop only waits for the answers.

Another process (``ibsearch ingest``) may commit to the library at any time. SQLite readers see
new commits on their next statement, but the FAISS indexes are loaded once. Before each piece of
work the service asks SQLite whether anyone else committed since it last looked (``PRAGMA
data_version``, answered from memory); only then does it compare each loaded index with the
database's id summary and add or drop the vectors that differ (``IndexSet.catch_up``). A search
during an ingest therefore sees every file committed before it started, without a restart and
without reading a whole index file again.

Text queries that arrive while the thread is busy are encoded together when it gets to them: the
text tower's weights are read once for the batch instead of once per query (on a CPU, a short text's
encoding is bound by reading those weights), so eight clients do not wait eight times as long.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..closing import Closing
from ..errors import IbsearchError, UsageError
from ..library import LibraryResources
from ..modality import TEXT, FileKind
from ..query_vector import Compute
from ..search import Hit, Searcher, SearchOptions
from ..store.records import FileRecord
from ..terms import LIKE, Term

log = logging.getLogger(__name__)
T = TypeVar("T")
TEXT_CACHE_SIZE = 1024  # vectors of recent text terms kept (a reload, back, new filters, a term reused)
BATCH = 16  # most pieces of work taken together (their texts encoded in one batch)


class ItemNotFound(IbsearchError):
    """No item with the asked id in the library (answered with 404)."""


class TextCache:
    """The vectors of recent text terms (a :class:`~ibsearch.query_vector.TermCache` for the
    server's :class:`Searcher`), and the texts of queued queries encoded in one batch (:meth:`prefill`)."""

    def __init__(self, size: int = TEXT_CACHE_SIZE) -> None:
        self.size = size
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()
        self.batches = 0  # batches of several texts encoded together

    def vector(self, term: Term, compute: Compute) -> np.ndarray:
        if term.kind != TEXT or not isinstance(term.value, str):
            return compute(term)
        vector = self._texts.get(term.value)
        if vector is None:
            vector = compute(term)
            self._remember(term.value, vector)
        else:
            self._texts.move_to_end(term.value)
        return vector

    def _remember(self, text: str, vector: np.ndarray) -> None:
        if self.size:
            self._texts[text] = vector
            while len(self._texts) > self.size:
                self._texts.popitem(last=False)

    def prefill(self, library: LibraryResources, texts: Iterable[str]) -> None:
        """Encode the ``texts`` not remembered yet in one batch (with fewer than two, the search
        encodes its text itself, exactly as without a cache)."""
        todo = [text for text in dict.fromkeys(texts) if text not in self._texts]
        if len(todo) < 2 or not self.size:
            return
        import torch

        from ..encoder.media.registry import load

        try:
            batch = torch.stack([load(FileKind.TEXT, TEXT, text.encode("utf-8")) for text in todo])
            vectors = library.encoder().encode(TEXT, batch)
        except IbsearchError as exc:  # each search then encodes its own text and reports the problem
            log.debug("could not encode %d texts together: %s", len(todo), exc)
            return
        for text, vector in zip(todo, vectors, strict=True):
            self._remember(text, vector)
        self.batches += 1


@dataclass(frozen=True)
class Found:
    """The hits of one search with their item ids, and where the time went."""

    hits: list[tuple[FileRecord, Hit]]  # (the item's file, hit), best first
    encode_seconds: float  # turning the terms into one query vector (0 when it was remembered)
    search_seconds: float  # the rest: filters, the index search, hits back to files


@dataclass
class _Work:
    """A piece of work for the library's thread, with the texts it will encode."""

    run: Callable[[LibraryResources], Any]
    future: Future[Any] = field(default_factory=Future)
    texts: tuple[str, ...] = ()


class LibraryService(Closing):
    """One library on a thread of its own (see the module docs); ``opener()`` opens it there."""

    def __init__(self, opener: Callable[[], LibraryResources]) -> None:
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._version: int | None = None
        self._batch_seconds = 0.0  # encoding the texts of the batch under way together
        self.cache = TextCache()  # the searcher's, made on the library's thread
        opened: Future[LibraryResources] = Future()
        self._thread = threading.Thread(target=self._serve, args=(opener, opened), name="ibsearch-library")
        self._thread.daemon = True
        self._thread.start()
        self.library: LibraryResources = opened.result()  # the opener's error, if it fails
        self.searcher: Searcher

    @staticmethod
    def _data_version(lib: LibraryResources) -> int:
        return lib.store.data_version()

    def close(self) -> None:
        """Close the library (on its thread) and stop the thread."""
        try:
            self.call(lambda lib: lib.close())
        finally:
            self._queue.put(None)
            self._thread.join()

    # ------------------------------------------------------------------ running work

    def submit(self, run: Callable[[LibraryResources], T], texts: Iterable[str] = ()) -> Future[T]:
        """Queue ``run(library)`` for the library's thread; ``texts``: those it will encode."""
        work = _Work(run, texts=tuple(texts))
        self._queue.put(work)
        return work.future

    def call(self, run: Callable[[LibraryResources], T], texts: Iterable[str] = ()) -> T:
        """Run ``run(library)`` on the library's thread, after catching up with other processes."""
        return self.submit(run, texts).result()

    async def run(self, run: Callable[[LibraryResources], T], texts: Iterable[str] = ()) -> T:
        """:meth:`call` for the event loop: waits without blocking it."""
        return await asyncio.wrap_future(self.submit(run, texts))

    def _serve(self, opener: Callable[[], LibraryResources], opened: Future[LibraryResources]) -> None:
        """The library's thread: open it, then take the work waiting (up to :data:`BATCH` pieces),
        catch up with other processes, encode the texts of all of it together, do each in turn."""
        try:
            lib = opener()
            self._version = self._data_version(lib)
            self.searcher = Searcher(lib, cache=self.cache)
        except BaseException as exc:
            opened.set_exception(exc)
            return
        opened.set_result(lib)
        while (batch := self._next_batch()) is not None:
            self._prepare(lib, [text for work in batch for text in work.texts])
            for work in batch:
                if work.future.set_running_or_notify_cancel():
                    try:
                        work.future.set_result(work.run(lib))
                    except BaseException as exc:
                        work.future.set_exception(exc)

    def _next_batch(self) -> list[_Work] | None:
        """The work waiting now, at least one piece (None: stop)."""
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < BATCH and not self._queue.empty():
            more = self._queue.get()
            if more is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(more)
        return batch

    def _prepare(self, lib: LibraryResources, texts: list[str]) -> None:
        """Catch up with other processes' commits, and encode the batch's texts together."""
        self._batch_seconds = 0.0
        try:
            replaced = lib.indexes.reload_replaced()  # a reindex in another process may commit nothing
            version = self._data_version(lib)
            committed, self._version = version != self._version, version
            if committed:
                lib.indexes.catch_up()
            if replaced or committed:
                lib.indexes.dirty.clear()  # only a writer saves index files; the server never does
            started = time.perf_counter()
            self.cache.prefill(lib, texts)
            self._batch_seconds = time.perf_counter() - started
        except IbsearchError as exc:
            log.warning("%s", exc)  # each piece of work meets the problem again and reports it

    # ------------------------------------------------------------------ what the routes ask for

    def search(self, terms: list[Term], options: SearchOptions) -> Found:
        """Search (on the library's thread); ``like`` terms may name item ids (ints) instead of paths."""
        started = time.perf_counter()
        lib = self.library
        resolved = [
            self._like_path(lib, t) if t.kind == LIKE and isinstance(t.value, int) else t for t in terms
        ]
        hits = self.searcher.search(resolved, options)
        found = []
        for hit in hits:
            record = lib.store.files.get(hit.path)
            if record is not None:  # None: removed by another process a moment ago
                found.append((record, hit))
        embedded = self.searcher.embedder.seconds
        encode = embedded
        if any(t.kind == TEXT for t in terms):
            encode += self._batch_seconds  # its text was encoded with those of the queries waiting with it
        return Found(found, encode, time.perf_counter() - started - embedded)

    @staticmethod
    def _like_path(lib: LibraryResources, term: Term) -> Term:
        record = lib.store.files.get_by_id(term.value)
        if record is None:
            raise UsageError(
                f"like: there is no item {term.value} in the library (see the ids of the results)"
            )
        return Term(LIKE, record.path, term.weight)

    @staticmethod
    def item(lib: LibraryResources, key: int | str) -> FileRecord:
        """The record of an item, by its id or by the path it is stored under (a database lookup:
        the disk is not touched); :class:`ItemNotFound` when there is none."""
        record = lib.store.files.get_by_id(key) if isinstance(key, int) else lib.store.files.get(key)
        if record is None:
            what = f"item {key}" if isinstance(key, int) else f"item stored as {key!r}"
            raise ItemNotFound(f"there is no {what} in the library")
        return record


__all__ = ["Found", "ItemNotFound", "LibraryService", "TextCache"]
