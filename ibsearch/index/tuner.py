"""Tuning an approximate index to a recall target, measured against exact search on its own vectors.

The queries are a sample of the library's own vectors. Each one's exact neighbours are collected while
the index is filled (:class:`TruthCollector`, one pass over the vectors); the query's own id is left out
of both lists, so a vector finding itself does not count. :func:`tune` then looks for the smallest
``nprobe`` whose recall@k reaches the target: doubling first, then halving the last step.
"""

from __future__ import annotations

import statistics
import time

import faiss
import numpy as np

from .faiss_index import FaissIndex
from .persist import Tuning

_LATENCY_QUERIES = 50  # single queries timed at the chosen nprobe


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
    """The smallest ``nprobe`` (up to ``max_nprobe``, default all lists) reaching recall ``target``.

    When even ``max_nprobe`` falls short, that is what comes back, with its (lower) recall: the caller
    decides whether the index is still worth having. Sets ``index.nprobe`` to the choice.
    """
    started = time.perf_counter()
    top = max(1, min(int(max_nprobe or index.nlist), index.nlist))
    measured: dict[int, float] = {}

    def recall(nprobe: int) -> float:
        if nprobe not in measured:
            measured[nprobe] = recall_at(index, queries, query_ids, truth, nprobe)
        return measured[nprobe]

    high = 1
    while high < top and recall(high) < target:
        high = min(2 * high, top)
    low = high // 2  # recall(low) < target (or low == 0)
    while high - low > max(1, high // 8):
        middle = (low + high) // 2
        if recall(middle) >= target:
            high = middle
        else:
            low = middle
    index.nprobe = high
    latency = single_query_ms(index, queries[:_LATENCY_QUERIES])
    return Tuning(
        nprobe=high,
        recall=round(recall(high), 4),
        k=truth.shape[1],
        target=target,
        queries=len(queries),
        latency_ms=round(latency, 3),
        seconds=round(time.perf_counter() - started, 2),
    )


def single_query_ms(index: FaissIndex, queries: np.ndarray) -> float:
    """Median time of searching ``queries`` one at a time (k = 10), in milliseconds."""
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q, 10)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) if times else 0.0


__all__ = ["TruthCollector", "recall_at", "single_query_ms", "tune", "without_self"]
