"""Tuning an approximate index to a recall target, measured against exact search on its own vectors.

The queries are a sample of the library's own vectors. Each one's exact neighbours are collected while
the index is filled (:class:`TruthCollector`, one pass over the vectors); the query's own id is left out
of both lists, so a vector finding itself does not count. :func:`tune` then looks for the smallest
``nprobe`` whose recall@k reaches the target (doubling first, then halving the last step), for a refined
kind once per candidate count tried, and keeps the fastest.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import faiss
import numpy as np

from .faiss_index import FaissIndex
from .persist import Tuning
from .refine import CANDIDATES_PER_HIT

log = logging.getLogger(__name__)

_LATENCY_QUERIES = 50  # single queries timed at each setting tried
#: Candidates per hit a refined index is tuned with: the default, and more for vectors whose 4-bit
#: codes order a neighbourhood too roughly (tight clusters, near-duplicates; BENCHMARKS.md).
CANDIDATES_PER_HIT_STEPS = tuple(CANDIDATES_PER_HIT << i for i in range(4))
#: A step of more candidates that misses the target and gains less recall than this ends the search.
_GAIN = 0.005


class TruthCollector:
    """The exact top-``k`` of ``queries`` ``(nq, dim)`` over chunks of vectors, their own ids left out."""

    def __init__(self, queries: np.ndarray, query_ids: np.ndarray, k: int) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.query_ids = np.asarray(query_ids, dtype=np.int64)
        self.k = int(k)
        self._heap = faiss.ResultHeap(len(self.queries), self.k + 1, keep_max=True)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Take one chunk ``(ids (n,), vectors (n, dim))`` into account."""
        if not len(ids) or not len(self.queries):
            return
        scores, local = faiss.knn(
            self.queries, np.ascontiguousarray(vectors), min(self.k + 1, len(ids)), faiss.METRIC_INNER_PRODUCT
        )
        self._heap.add_result(scores, np.asarray(ids, dtype=np.int64)[local])

    def truth(self) -> np.ndarray:
        """``(nq, k)`` exact neighbour ids of each query, best first (-1 where fewer exist)."""
        self._heap.finalize()
        return without_self(self._heap.I, self.query_ids, self.k)


def without_self(ids: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` ids of each row that are not the row's query id (-1 padded)."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for row, (found, own) in enumerate(zip(ids, query_ids, strict=True)):
        kept = found[(found != own) & (found >= 0)][:k]
        out[row, : len(kept)] = kept
    return out


def recall_at(
    index: FaissIndex, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray, nprobe: int
) -> float:
    """Recall@k of ``index`` searched with ``nprobe`` against ``truth`` ``(nq, k)`` (a
    :class:`TruthCollector`'s)."""
    k = truth.shape[1]
    _, found = index.search(queries, k + 1, nprobe=nprobe)
    found = without_self(found, query_ids, k)
    hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / max(int((truth >= 0).sum()), 1)


def tune(
    index: FaissIndex,
    queries: np.ndarray,
    query_ids: np.ndarray,
    truth: np.ndarray,
    target: float,
    max_nprobe: int | None = None,
) -> Tuning:
    """The fastest search settings (up to ``max_nprobe``, default all lists) reaching recall ``target``:
    the smallest ``nprobe``, and for a refined kind (``...,Refine(...)``) with it the candidates its finer
    codes rank, each of :data:`CANDIDATES_PER_HIT_STEPS` tried with its own smallest ``nprobe`` and the
    pair that answers single queries fastest kept (more candidates can need fewer lists).

    When even ``max_nprobe`` falls short, the best recall reached comes back: the caller decides whether
    the index is still worth having. Sets the index's ``nprobe`` (and candidates) to the choice.
    """
    started = time.perf_counter()
    k = truth.shape[1]
    top = max(1, min(int(max_nprobe or index.nlist), index.nlist))
    twin = index._refine
    measure = partial(recall_at, index, queries, query_ids, truth)
    best: Tuning | None = None
    for per_hit in CANDIDATES_PER_HIT_STEPS if twin is not None else (0,):
        tried = Tuning(0, 0.0, k, target, len(queries), 0.0, candidates=per_hit * k)
        if twin is not None:
            twin.tuning = tried
        at_top = measure(top) if best is not None and best.recall < target else None
        if at_top is not None and at_top < target:  # still short with every list allowed: no search for
            nprobe, reached = top, at_top  # the smallest (on vectors IVF cannot split, e.g. uniform ones)
        else:
            nprobe, reached = smallest_nprobe(measure, target, top)
        index.nprobe = nprobe
        timed = best is None or reached >= target  # a miss's speed decides nothing
        latency = single_query_ms(index, queries[:_LATENCY_QUERIES]) if timed else 0.0
        tried = replace(tried, nprobe=nprobe, recall=round(reached, 4), latency_ms=round(latency, 3))
        log.debug("tuning: %d candidates, nprobe %d: recall %.4f, %.2f ms", tried.candidates, nprobe,
                  reached, latency)  # fmt: skip
        if best is not None and reached < target and reached < best.recall + _GAIN:
            break  # more candidates gain nothing: the lists are what is missing
        best = tried if best is None or _better(tried, best, target) else best
        if reached >= target:
            if nprobe == 1 or (best is not tried and nprobe >= best.nprobe):
                break  # more candidates cannot spare lists any more
            top = nprobe  # nor need more lists
    assert best is not None
    index.nprobe = best.nprobe
    if twin is not None:
        twin.tuning = best
    if not best.latency_ms:  # a miss that beat the first one: its speed, for the record
        best = replace(best, latency_ms=round(single_query_ms(index, queries[:_LATENCY_QUERIES]), 3))
    return replace(best, seconds=round(time.perf_counter() - started, 2))


def _better(a: Tuning, b: Tuning, target: float) -> bool:
    """Whether settings ``a`` beat ``b``: reaching ``target`` first, then faster, else higher recall."""
    if (a.recall >= target) != (b.recall >= target):
        return a.recall >= target
    return a.latency_ms < b.latency_ms if a.recall >= target else a.recall > b.recall


def smallest_nprobe(recall: Callable[[int], float], target: float, top: int) -> tuple[int, float]:
    """The smallest ``nprobe`` up to ``top`` whose ``recall(nprobe)`` reaches ``target`` (doubling first,
    then halving the last step), with its recall; ``top`` and its recall when none does."""
    measured: dict[int, float] = {}

    def at(nprobe: int) -> float:
        if nprobe not in measured:
            measured[nprobe] = recall(nprobe)
        return measured[nprobe]

    high = 1
    while high < top and at(high) < target:
        high = min(2 * high, top)
    if at(high) < target:
        return high, at(high)
    low = high // 2  # at(low) < target (or low == 0)
    while high - low > max(1, high // 8):
        middle = (low + high) // 2
        if at(middle) >= target:
            high = middle
        else:
            low = middle
    return high, at(high)


def single_query_ms(index: FaissIndex, queries: np.ndarray) -> float:
    """Median time of searching ``queries`` one at a time (k = 10), in milliseconds."""
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q, 10)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) if times else 0.0


__all__ = [
    "CANDIDATES_PER_HIT_STEPS",
    "TruthCollector",
    "recall_at",
    "single_query_ms",
    "smallest_nprobe",
    "tune",
    "without_self",
]
