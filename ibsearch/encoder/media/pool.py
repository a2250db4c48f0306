"""Decoding many inputs in worker processes, results as they complete, a crash costing one item.

Decoding (PyAV, Pillow, resampling) runs on CPU cores while the model runs in the parent. A decoder
that crashes its process (a damaged file can do that) is isolated: the items that were in flight are
retried one at a time, and only the culprit comes back as a :class:`MediaError`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from ...errors import MediaError
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


def _work(loader: Loader, modality: str, item: Any) -> tuple[bool, Any]:
    """Run in a worker: ``(True, ndarray)`` or ``(False, (path, reason))``.

    Arrays and plain tuples cross the process boundary; tensors and exceptions are rebuilt in
    the parent (pickled tensors would travel through shared-memory handles).
    """
    try:
        return True, loader(modality, item).numpy()
    except MediaError as exc:
        return False, (exc.path, exc.reason)
    except Exception as exc:  # a bad file must never stop a run; keep the cause for the report
        log.exception("unexpected error while loading %s", _item_name(item))
        return False, (_item_name(item), f"unexpected {type(exc).__name__}: {exc}")


def _result(outcome: tuple[bool, Any]) -> torch.Tensor | MediaError:
    ok, payload = outcome
    return torch.from_numpy(payload) if ok else MediaError(*payload)


def _init_worker() -> None:
    # Workers run side by side; intra-op threads would only oversubscribe the cores.
    torch.set_num_threads(1)


def _pool(workers: int) -> ProcessPoolExecutor:
    ctx: multiprocessing.context.BaseContext
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = server = multiprocessing.get_context("forkserver")
        # Forked from a server that already imported torch, PIL and PyAV: fast worker starts.
        server.set_forkserver_preload([_PRELOAD])
    else:
        ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker)


def load_parallel(
    modality: str,
    items: Iterable[Any],
    workers: int = 0,
    *,
    max_in_flight: int | None = None,
    loader: Loader,
) -> Iterator[tuple[int, torch.Tensor | MediaError]]:
    """Prepare ``items`` in ``workers`` processes; yield ``(index, tensor or MediaError)``.

    Results come in completion order, each exactly once; ``index`` is the item's position in
    ``items``. At most ``max_in_flight`` items (default ``2 * workers``) are queued or decoding
    at a time, so memory stays flat however long ``items`` is. ``workers=0`` runs in this
    process. A worker that dies (e.g. a decoder crash) costs only its own item: the items that
    were in flight are retried one at a time and the culprit yields a :class:`MediaError`.
    ``loader(modality, item)`` loads one item; it must be a module-level function (it is pickled by
    name).
    """
    modality = canonical(modality)
    if workers <= 0:
        for index, item in enumerate(items):
            yield index, _result(_work(loader, modality, item))
        return
    run = _PoolRun(loader, modality, items, workers, max(1, max_in_flight or 2 * workers))
    try:
        yield from run.results()
    finally:
        run.pool.shutdown(wait=True, cancel_futures=True)


_CRASHED = "the decoder crashed (its worker process died); the file is probably damaged"


class _PoolRun:
    """One :func:`load_parallel` over a process pool: keeps it fed, and isolates crashes."""

    def __init__(self, loader: Loader, modality: str, items: Iterable[Any], workers: int, limit: int) -> None:
        self.loader, self.modality, self.workers, self.limit = loader, modality, workers, limit
        self.source: Iterator[tuple[int, Any]] = enumerate(items)
        self.exhausted = False
        # Items that were in flight when a worker died; run alone so that a crash names its item.
        self.suspects: deque[tuple[int, Any]] = deque()
        self.pending: dict[Future[tuple[bool, Any]], tuple[int, Any, bool]] = {}
        self.pool = _pool(workers)

    def results(self) -> Iterator[tuple[int, torch.Tensor | MediaError]]:
        while True:
            self._fill()
            if not self.pending:
                return
            done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                index, item, alone = self.pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    broken = True
                    if alone:
                        yield index, MediaError(_item_name(item), _CRASHED)
                    else:
                        self.suspects.append((index, item))
                    continue
                yield index, _result(outcome)
            if broken:
                yield from self._settle()

    def _next(self) -> tuple[int, Any, bool] | None:
        """The next item to submit and whether it must run alone, or None when there is none now."""
        if self.suspects:
            index, item = self.suspects.popleft()
            return index, item, True
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
                future = self.pool.submit(_work, self.loader, self.modality, item)
            except BrokenProcessPool:
                self.suspects.appendleft((index, item))
                self.pool = _replace_pool(self.pool, self.workers)
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
        self.pool = _replace_pool(self.pool, self.workers)


def _replace_pool(pool: ProcessPoolExecutor, workers: int) -> ProcessPoolExecutor:
    log.warning("a preprocessing worker died; restarting the worker pool")
    pool.shutdown(wait=True, cancel_futures=True)
    return _pool(workers)


__all__ = ["Loader", "load_parallel"]
