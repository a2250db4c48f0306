"""Decoding many inputs in worker processes, results as they complete, a crash costing one item.

Decoding (PyAV, Pillow, resampling) runs on CPU cores while the model runs in the parent. A decoder
that crashes its process (a damaged file can do that) is isolated: the items that were in flight are
retried one at a time, and only the culprit comes back as a :class:`MediaError`. A decoder that
hangs is bounded by an optional time limit per item: its pool is killed and replaced, and the item
comes back as a transient :class:`MediaError` while the others run again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import multiprocessing
import os
import pickle
import signal
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from ...errors import MediaError, UsageError
from ...modality import canonical
from .decode import source_name

log = logging.getLogger(__name__)

#: ``loader(modality, item)`` -> one tensor; a module-level function (it is pickled by name).
Loader = Callable[[str, Any], torch.Tensor]
# Imported by the fork server before it forks workers, so that they start with every decoder loaded.
_PRELOAD = "ibsearch.encoder.media.registry"


def _item_name(item: Any) -> str:
    if isinstance(item, tuple) and len(item) == 2:
        item = item[1]  # a registry item: (file kind, source)
    if isinstance(item, str) and not os.path.exists(item) and len(item) > 60:
        return item[:57] + "..."
    try:
        return source_name(item)
    except Exception:
        return f"<{type(item).__name__}>"


#: What a warning raised in a worker carries to the parent: message, category, file, line.
_Said = tuple[str, type[Warning], str, int]
#: ``(True, ndarray, said)`` or ``(False, (path, reason, transient), said)``.
_Outcome = tuple[bool, Any, list[_Said]]
# Warnings raised again from workers, per location: Python's "default" action shows each once.
_REWARNED: dict[Any, Any] = {}


def _work(loader: Loader, modality: str, item: Any, index: int | None = None) -> _Outcome:
    """Run in a worker: ``(True, ndarray, said)`` or ``(False, (path, reason, transient), said)``.

    Arrays and plain tuples cross the process boundary; tensors and exceptions are rebuilt in
    the parent (pickled tensors would travel through shared-memory handles). So are the warnings
    the item raised (``said``): in a worker they would go straight to the terminal, past the
    caller's filters (the command line counts them). ``index`` is given only in a worker. Under a
    time limit the worker first says ``(index, pid)`` on its start queue, so that the parent times
    how long the item runs, not how long it waited in the executor's queue.
    """
    if index is None:
        return (*_load(loader, modality, item), [])
    if _started is not None:
        _started.put((index, os.getpid()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # each one reaches the parent, whose filters decide
        ok, payload = _load(loader, modality, item)
    return ok, payload, [(str(w.message), _picklable(w.category), w.filename, w.lineno) for w in caught]


def _load(loader: Loader, modality: str, item: Any) -> tuple[bool, Any]:
    try:
        return True, loader(modality, item).numpy()
    except MediaError as exc:
        return False, (exc.path, exc.reason, exc.transient)
    except Exception as exc:  # a bad file must never stop a run; keep the cause for the report
        log.exception("unexpected error while loading %s", _item_name(item))
        # Permission denied or an I/O error says nothing about the content: worth a retry later.
        reason = f"unexpected {type(exc).__name__}: {exc}"
        return False, (_item_name(item), reason, isinstance(exc, OSError))


def _picklable(category: type[Warning]) -> type[Warning]:
    """``category``, or UserWarning for a class the parent could not unpickle (one defined in a function)."""
    try:
        pickle.dumps(category)
    except Exception:
        return UserWarning
    return category


def _result(outcome: _Outcome) -> torch.Tensor | MediaError:
    ok, payload, said = outcome
    for message, category, filename, lineno in said:
        warnings.warn_explicit(message, category, filename, lineno, registry=_REWARNED)
    if ok:
        return torch.from_numpy(payload)
    path, reason, transient = payload
    return MediaError(path, reason, transient=transient)


# In a worker under a time limit: the queue it announces each item's start on (set by _init_worker).
_started: Any = None


def _init_worker(started: Any) -> None:
    global _started
    # Workers run side by side; intra-op threads would only oversubscribe the cores.
    torch.set_num_threads(1)
    _started = started


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        server = multiprocessing.get_context("forkserver")
        # Forked from a server that already imported torch, PIL and PyAV: fast worker starts.
        server.set_forkserver_preload([_PRELOAD])
        return server
    return multiprocessing.get_context("spawn")


def _discard(pool: ProcessPoolExecutor, busy: Iterable[int]) -> None:
    """Shut ``pool`` down without waiting for its workers, which are killed first; ``busy`` are the
    pids that the workers still running an item announced."""
    # ProcessPoolExecutor cannot stop a running call, and shutdown(wait=True) would wait for a hung
    # decoder forever, so the processes are killed. ``_processes`` (pid -> Process) is private but
    # has held the workers since Python 3.2; were it gone, the announced pids still name every
    # worker that is running something (idle ones exit on shutdown by themselves). Only then are
    # bare pids signalled: a pid that the executor has let go of may belong to another process.
    processes = getattr(pool, "_processes", None)
    if processes is not None:
        for process in list(processes.values()):
            process.kill()
    else:
        for pid in busy:
            with contextlib.suppress(OSError):
                os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    # No waiting even now: a process stuck in the kernel (a dead network mount) dies only when the
    # kernel lets it; the executor's own thread reaps the workers as they go.
    pool.shutdown(wait=False, cancel_futures=True)


def load_parallel(
    modality: str,
    items: Iterable[Any],
    workers: int = 0,
    *,
    max_in_flight: int | None = None,
    loader: Loader,
    timeout: float | None = None,
    threads: int = 1,
) -> Iterator[tuple[int, torch.Tensor | MediaError]]:
    """Prepare ``items`` in ``workers`` processes; yield ``(index, tensor or MediaError)``.

    Results come in completion order, each exactly once; ``index`` is the item's position in
    ``items``. At most ``max_in_flight`` items (default ``2 * workers``) are queued or decoding
    at a time, so memory stays flat however long ``items`` is. ``workers=0`` runs in this
    process. A worker that dies (e.g. a decoder crash) costs only its own item: the items that
    were in flight are retried one at a time and the culprit yields a :class:`MediaError`.
    ``loader(modality, item)`` loads one item; it must be a module-level function (it is pickled by
    name).

    ``timeout`` limits the seconds one item may decode (None: no limit), counted from when a worker
    starts it, not from when it was queued. An item past the limit yields a transient
    :class:`MediaError`; its pool is killed and replaced, and the other items that were in flight
    run again. With ``workers=0`` no limit can be enforced (a hung decoder cannot be stopped in
    this process) and ``timeout`` is ignored. Raises :class:`UsageError` for a ``timeout`` that is
    not a positive, finite number of seconds.

    ``threads`` (with ``workers=0``): up to that many items decode at once on threads of this
    process, a round at a time. A round starts when the caller asks for the next result and all its
    results are handed over before another starts, so decoding never runs beside whatever the
    caller does between results (the model, which has every core). Only for loaders that are safe
    on threads (PDFium, for one, is not).
    """
    modality = canonical(modality)
    if timeout is not None and not 0 < timeout < math.inf:
        raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r} (None for no limit)")
    if workers <= 0 and threads > 1:
        yield from _in_rounds(loader, modality, items, threads)
        return
    if workers <= 0:
        for index, item in enumerate(items):
            yield index, _result(_work(loader, modality, item))
        return
    run = _PoolRun(loader, modality, items, workers, max(1, max_in_flight or 2 * workers), timeout)
    try:
        yield from run.results()
    finally:
        run.close()


def _in_rounds(
    loader: Loader, modality: str, items: Iterable[Any], threads: int
) -> Iterator[tuple[int, torch.Tensor | MediaError]]:
    """``load_parallel`` on ``threads`` threads of this process, ``threads`` items per round."""
    numbered = enumerate(items)
    with ThreadPoolExecutor(threads, thread_name_prefix="ibsearch-decode") as decoders:
        while batch := list(itertools.islice(numbered, threads)):
            futures = [(index, decoders.submit(_work, loader, modality, item)) for index, item in batch]
            outcomes = [(index, future.result()) for index, future in futures]  # the whole round first
            for index, outcome in outcomes:
                yield index, _result(outcome)


_CRASHED = "the decoder crashed (its worker process died); the file is probably damaged"
# How often the parent looks for start announcements while an item in flight has not yet started.
_POLL_S = 0.1


class _PoolRun:
    """One :func:`load_parallel` over a process pool: keeps it fed, isolates crashes, and kills the
    pool when an item overruns the time limit."""

    def __init__(
        self,
        loader: Loader,
        modality: str,
        items: Iterable[Any],
        workers: int,
        limit: int,
        timeout: float | None,
    ) -> None:
        self.loader, self.modality, self.workers, self.limit = loader, modality, workers, limit
        self.timeout = timeout
        self.source: Iterator[tuple[int, Any]] = enumerate(items)
        self.exhausted = False
        # Items that were in flight when a worker died; run alone so that a crash names its item.
        self.suspects: deque[tuple[int, Any]] = deque()
        # Items that were in flight beside one that timed out: not at fault, so run again normally.
        self.retry: deque[tuple[int, Any]] = deque()
        self.pending: dict[Future[_Outcome], tuple[int, Any, bool]] = {}
        self._start_pool()

    def _start_pool(self) -> None:
        ctx = _context()
        # The time limit counts from each item's start, which its worker announces: the executor
        # queues items behind busy workers (and starts workers lazily), so submission time would
        # time out an item for the slowness of others. A SimpleQueue writes at once under a lock,
        # where a Queue's feeder thread might never run in a worker hung while holding the GIL. A
        # worker killed holding that lock would block the others' announcements, so each pool gets
        # its own queue, thrown away with the pool.
        self.clock = ctx.SimpleQueue() if self.timeout is not None else None
        # index -> (when the parent heard that it started, the pid of its worker), for this pool.
        self.started: dict[int, tuple[float, int]] = {}
        self.pool = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self.clock,)
        )

    def _restart(self, why: str, in_flight: dict[Future[_Outcome], tuple[int, Any, bool]]) -> None:
        """Kill the pool (``in_flight``: its items that may still run) and start a fresh one."""
        log.warning("%s; restarting the worker pool", why)
        self._discard(in_flight)
        if self.clock is not None:
            self.clock.close()
        self._start_pool()

    def _discard(self, in_flight: dict[Future[_Outcome], tuple[int, Any, bool]]) -> None:
        running = (index for future, (index, _, _) in in_flight.items() if not future.done())
        _discard(self.pool, [self.started[index][1] for index in running if index in self.started])

    def close(self) -> None:
        """Shut the pool down; kill it if an item still runs (nobody will take the result)."""
        if any(not future.done() for future in self.pending):
            self._discard(self.pending)
        else:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def results(self) -> Iterator[tuple[int, torch.Tensor | MediaError]]:
        while True:
            self._fill()
            if not self.pending:
                return
            done, _ = wait(self.pending, timeout=self._wait_s(), return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                index, item, alone = self.pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    broken = True
                    if alone:
                        yield index, MediaError(_item_name(item), _CRASHED, transient=True)
                    else:
                        self.suspects.append((index, item))
                    continue
                yield index, _result(outcome)
            if broken:
                yield from self._settle()
            elif self.timeout is not None:
                yield from self._expire(self.timeout)

    def _wait_s(self) -> float | None:
        """Seconds to wait for a result: until the earliest deadline, or a short poll while an item
        in flight has not announced its start; None without a time limit."""
        if self.timeout is None or self.clock is None:
            return None
        while not self.clock.empty():
            index, pid = self.clock.get()
            self.started[index] = (time.monotonic(), pid)
        now = time.monotonic()
        waits = [
            self.started[index][0] + self.timeout - now if index in self.started else _POLL_S
            for index, _, _ in self.pending.values()
        ]
        return max(0.0, min(waits, default=_POLL_S))

    def _expire(self, timeout: float) -> Iterator[tuple[int, torch.Tensor | MediaError]]:
        """Fail the items that have run for ``timeout`` seconds, kill the pool without waiting for
        them, keep what the others finished and run the rest again in a fresh pool."""
        now = time.monotonic()
        late = {
            future
            for future, (index, _, _) in self.pending.items()
            if not future.done() and index in self.started and now - self.started[index][0] >= timeout
        }
        if not late:
            return
        pending, self.pending = self.pending, {}
        self._restart(f"a preprocessing worker ran past the {timeout:g} s limit", pending)
        reason = (
            f"timed out after {timeout:g} s (the decoder hung, or the file is damaged or too large to "
            "decode in time); if the file is sound, raise the limit with the ingest option --timeout"
        )
        for future, (index, item, alone) in pending.items():
            if future in late:
                yield index, MediaError(_item_name(item), reason, transient=True)
            elif future.done() and not future.cancelled() and future.exception() is None:
                yield index, _result(future.result())
            else:
                (self.suspects if alone else self.retry).append((index, item))

    def _next(self) -> tuple[int, Any, bool] | None:
        """The next item to submit and whether it must run alone, or None when there is none now."""
        if self.suspects:
            index, item = self.suspects.popleft()
            return index, item, True
        if self.retry:
            index, item = self.retry.popleft()
            return index, item, False
        if self.exhausted:
            return None
        try:
            index, item = next(self.source)
        except StopIteration:
            self.exhausted = True
            return None
        return index, item, False

    def _fill(self) -> None:
        """Submit items until ``limit`` are in flight (only one while a suspect runs)."""
        while True:
            alone_running = self.suspects or any(alone for _, _, alone in self.pending.values())
            if len(self.pending) >= (1 if alone_running else self.limit):
                return
            chosen = self._next()
            if chosen is None:
                return
            index, item, alone = chosen
            try:
                future = self.pool.submit(_work, self.loader, self.modality, item, index)
            except BrokenProcessPool:
                self.suspects.appendleft((index, item))
                self._restart("a preprocessing worker died", {})
                continue
            self.pending[future] = (index, item, alone)

    def _settle(self) -> Iterator[tuple[int, torch.Tensor | MediaError]]:
        """After a crash every other in-flight item fails with the pool: keep what finished, retry the
        rest alone, and start a fresh pool."""
        wait(self.pending)
        for future, (index, item, _) in list(self.pending.items()):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                self.suspects.append((index, item))
                continue
            yield index, _result(outcome)
        self.pending.clear()
        self._restart("a preprocessing worker died", {})


__all__ = ["Loader", "load_parallel"]
