"""Exact search of a few queries at memory speed: the vectors read once, on every core.

FAISS's flat search takes its scalar loop below ``distance_compute_blas_threshold`` queries, and that
loop shares queries (not vectors) between threads: a single query runs on one core, 2-3x slower than
reading the vectors once through a matrix product (BENCHMARKS.md "Exact search at memory speed"). So a
search of up to :data:`~.tuning.EXACT_PRODUCT_MOST` queries scores every row itself, over the index's own
memory (memory-mapped or not: no copy), and keeps the best by a partial sort:

* vectors in memory: numpy's BLAS product, which runs on every core;
* a memory-mapped index file: FAISS's format puts the vectors at byte 82 of the file, so they are not
  aligned to 4 bytes, and numpy then leaves BLAS for its own slow loops. The rows are split between
  threads instead, each scoring its share with FAISS's SIMD inner products (which take any address and
  release the GIL), a slice of rows at a time for all the queries while the slice is in cache.

The scores are computed over blocks of rows, so they never take more than :data:`_BLOCK_BYTES`
whatever the library's size. A filter is a mask over the rows (allowed ids looked up in a bitmap),
applied to the scores: the product costs the same for any filter, where FAISS's selector path is again
its one-core loop.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faiss
import numpy as np

from .results import Result

# FAISS uses BLAS for exact search only from this many queries on (its default, 128000, is not met
# before 125 queries at dim 1024); below it a scalar loop runs, ~20x slower for 100 queries against 1M
# vectors. Set once, at import: FAISS's process-wide settings are never changed by a search, which
# another thread's search would see (a search's own settings travel with it, as SearchParameters).
BLAS_THRESHOLD = 20
faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD

_BLOCK_BYTES = 64 << 20  # scores of one block of rows, for all the queries
_SLICE_ROWS = 2048  # rows a thread scores for every query while they stay in cache (8 MB at dim 1024)
_POOL: list[ThreadPoolExecutor] = []
_faiss: Any = (
    faiss  # its stubs lack the vector functions  # the threads that score mapped rows, made on first use
)


def product_search(
    ids: np.ndarray, xb: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None
) -> Result:
    """The ``k`` best of the vectors ``xb`` (ids ``ids``) for each query of ``q`` by inner product,
    best first, as ``(scores (nq, k'), ids (nq, k'))``; ``allowed`` (sorted ids), when given, is the
    only ids that may come back. ``k'`` is at most the number of candidates; ties keep row order."""
    nq = len(q)
    mask = None if allowed is None else _allowed_rows(ids, allowed)
    rows = max(1, _BLOCK_BYTES // (4 * max(nq, 1)))
    best_scores: list[np.ndarray] = []
    best_rows: list[np.ndarray] = []
    for start in range(0, len(xb), rows):
        scores = _scores(xb[start : start + rows], q)
        if mask is not None:
            scores[:, ~mask[start : start + rows]] = -np.inf
        top = _top_columns(scores, k)
        best_scores.append(np.take_along_axis(scores, top, 1))
        best_rows.append(top + start)
    scores = np.hstack(best_scores) if best_scores else np.zeros((nq, 0), np.float32)
    rows_found = np.hstack(best_rows) if best_rows else np.zeros((nq, 0), np.int64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(scores, order, 1)
    found = ids[np.take_along_axis(rows_found, order, 1)]
    held = np.isfinite(scores)
    width = int(held.sum(axis=1).max(initial=0))
    return scores[:, :width].astype(np.float32, copy=False), np.where(held, found, -1)[:, :width]


def _scores(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Inner products ``(nq, len(rows))`` of the queries with ``rows``, on every core."""
    if rows.flags.aligned:
        return q @ rows.T  # numpy's BLAS
    out = np.empty((len(q), len(rows)), dtype=np.float32)
    threads = max(1, faiss.omp_get_max_threads())
    share = -(-len(rows) // threads)
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max(threads, os.cpu_count() or 1), "ibsearch-exact"))
    done = [_POOL[0].submit(_score_share, rows, q, out, lo, min(lo + share, len(rows)))
            for lo in range(0, len(rows), share)]  # fmt: skip
    for part in done:
        part.result()
    return out


def _score_share(rows: np.ndarray, q: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    """Scores of rows ``lo:hi`` into ``out``, a slice of rows at a time for every query."""
    dim = rows.shape[1]
    for start in range(lo, hi, _SLICE_ROWS):
        stop = min(start + _SLICE_ROWS, hi)
        block = faiss.swig_ptr(rows[start:stop])
        for i, query in enumerate(q):
            _faiss.fvec_inner_products_ny(
                faiss.swig_ptr(out[i, start:stop]), faiss.swig_ptr(query), block, dim, stop - start
            )


def _top_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Column numbers of the ``k`` highest scores of each row (in no order)."""
    if scores.shape[1] <= k:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def _allowed_rows(ids: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Whether each row's id is in ``allowed`` (sorted): a bitmap of the allowed ids read at each row's
    id while the ids stay small enough for one; else a binary search of each id."""
    if not len(allowed) or not len(ids):
        return np.zeros(len(ids), dtype=bool)
    top = int(max(allowed[-1], ids.max()))
    if top > max(1 << 24, 16 * len(ids)):
        at = np.searchsorted(allowed, ids).clip(0, len(allowed) - 1)
        return allowed[at] == ids
    bits = np.zeros(top + 1, dtype=bool)
    bits[allowed[allowed >= 0]] = True
    return bits[np.clip(ids, 0, top)] & (ids >= 0)


__all__ = ["BLAS_THRESHOLD", "product_search"]
