"""Exact search of a few queries at memory speed: the vectors read once, on every core.

FAISS's flat search takes its scalar loop below ``distance_compute_blas_threshold`` queries, and that
loop shares queries (not vectors) between threads: a single query runs on one core, 2-3x slower than
reading the vectors once through a matrix product (BENCHMARKS.md "Exact search at memory speed"). So a
search of up to :data:`~.tuning.EXACT_PRODUCT_MOST` queries scores every row itself, over the index's own
memory (memory-mapped or not: no copy), and keeps the best by a partial sort. The product is torch's
BLAS, on every core, over the vectors as they are: in memory, or in a memory-mapped index file, where
FAISS's format puts them at byte 82, not aligned to 4 bytes (numpy then leaves BLAS for its own slow
loops; torch takes a view of the mapped pages, no copy). On an Intel Xeon (AVX-512) it took 0.99-1.07x
the time of numpy's product and partial sort over aligned vectors at 100,000 and 300,000 vectors and
1.13-1.14x at 10,000, where FAISS's SIMD inner products over slices of rows, on threads of our own, took
1.2-1.4x and FAISS's flat search 2.3-2.5x.

The same product scores calibrated relevance's sample of the index (:class:`ScoreSample`): the query's
scores at the sampled vectors' rows, kept as they pass, where scoring those vectors apart would read 8 MB
more per index and query (0.46 ms of a 100,000-vector search's 18 ms).

The scores are computed over blocks of rows, so they never take more than :data:`_BLOCK_BYTES`
whatever the library's size. A filter is a mask over the rows (allowed ids looked up in a bitmap),
applied to the scores: the product costs the same for any filter, where FAISS's selector path is again
its one-core loop.
"""

from __future__ import annotations

import sys
import warnings

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
# torch warns, once, that the mapped pages it is given are read-only: they are only read here. Said for
# warnings raised from this module alone (a filter of catch_warnings' kind is not thread-safe).
warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning, __name__)


_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: a fixed, well-spread order


def hashed_first(values: np.ndarray, size: int) -> np.ndarray:
    """The positions (sorted) of the ``size`` of ``values`` (distinct non-negative integers) that come
    first in a fixed hashed order: a sample spread over them that stays mostly the same as values are
    added or removed (all positions when there are no more than ``size``)."""
    if len(values) <= size:
        return np.arange(len(values))
    order = np.asarray(values).astype(np.uint64) * _MIX  # wraps around: a hash of each
    return np.sort(np.argpartition(order, size)[:size])


class ScoreSample:
    """Asks an exact search for the query's scores at the vectors ``ids`` that the index holds at its
    rows ``rows`` (sorted), read off the product it makes anyway. The search sets :attr:`scores`
    ``(nq, len(rows))`` when its rows hold those ids, and leaves it None where they do not or where it
    made no such product (an approximate index, a search on another device, a batch of queries scored
    by FAISS)."""

    def __init__(self, ids: np.ndarray, rows: np.ndarray) -> None:
        self.ids, self.rows = ids, rows
        self.scores: np.ndarray | None = None

    def rows_in(self, ids: np.ndarray) -> np.ndarray | None:
        """:attr:`rows` if the index whose ids (row by row) are ``ids`` holds the sample there, else None."""
        rows = self.rows
        if not len(rows) or rows[-1] >= len(ids) or not np.array_equal(ids[rows], self.ids):
            return None
        return rows


def product_search(
    ids: np.ndarray,
    xb: np.ndarray,
    q: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    sample: ScoreSample | None = None,
) -> Result:
    """The ``k`` best of the vectors ``xb`` (ids ``ids``) for each query of ``q`` by inner product,
    best first, as ``(scores (nq, k'), ids (nq, k'))``; ``allowed`` (sorted ids), when given, is the
    only ids that may come back. ``k'`` is at most the number of candidates; ties keep row order.
    ``sample``, when given, receives the scores at its sample of the rows (before any filter)."""
    nq = len(q)
    picked = None if sample is None else sample.rows_in(ids)
    sampled: list[np.ndarray] = []
    mask = None if allowed is None else _allowed_rows(ids, allowed)
    rows = max(1, _BLOCK_BYTES // (4 * max(nq, 1)))
    if nq == 1 and len(xb) <= rows:
        return _one_query(ids, xb, q, k, mask, picked, sample)
    best_scores: list[np.ndarray] = []
    best_rows: list[np.ndarray] = []
    for start in range(0, len(xb), rows):
        scores = inner_products(xb[start : start + rows], q)
        if picked is not None:
            within = picked[(picked >= start) & (picked < start + rows)]
            sampled.append(scores[:, within - start])
        if mask is not None:
            scores[:, ~mask[start : start + rows]] = -np.inf
        top = _top_columns(scores, k)
        best_scores.append(np.take_along_axis(scores, top, 1))
        best_rows.append(top + start)
    if sample is not None and picked is not None:
        sample.scores = np.hstack(sampled)
    scores = np.hstack(best_scores) if best_scores else np.zeros((nq, 0), np.float32)
    rows_found = np.hstack(best_rows) if best_rows else np.zeros((nq, 0), np.int64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(scores, order, 1)
    found = ids[np.take_along_axis(rows_found, order, 1)]
    held = np.isfinite(scores)
    width = int(held.sum(axis=1).max(initial=0))
    return scores[:, :width].astype(np.float32, copy=False), np.where(held, found, -1)[:, :width]


def _one_query(
    ids: np.ndarray,
    xb: np.ndarray,
    q: np.ndarray,
    k: int,
    mask: np.ndarray | None,
    picked: np.ndarray | None,
    sample: ScoreSample | None,
) -> Result:
    """:func:`product_search` of one query over one block of rows, with the least work around the
    product: at 10,000 rows the general way's stacking and sorting of every block took 0.2 ms of 1.6."""
    scores = inner_products(xb, q)[0]
    if sample is not None and picked is not None:
        sample.scores = scores[picked][None]
    if mask is not None:
        scores[~mask] = -np.inf
    top = np.sort(np.argpartition(-scores, k - 1)[:k]) if len(scores) > k else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]  # ties keep row order
    top = top[np.isfinite(scores[top])]
    return scores[top][None], ids[top][None]


def inner_products(rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Inner products ``(nq, len(rows))`` of the queries ``q`` ``(nq, dim)`` with ``rows``, by torch's
    BLAS on every core, over ``rows`` as they are (aligned or not, mapped or not: no copy).

    Every product a search makes goes through here (index, calibration sample, folding), on one pool of
    threads: a query that took turns between numpy's OpenBLAS threads and torch's found the other pool
    still spinning after its last call, on the same two cores (a 300,000-vector product 1.8x slower).
    A process that has not loaded torch (no model: stored or raw vectors as queries, ``duplicates``)
    uses numpy's alone rather than load torch for it (1.6 s here), and keeps to it until torch is loaded.
    """
    theirs_np = np.asarray(rows, dtype=np.float32)  # mapped pages are read-only: only read
    ours_np = np.ascontiguousarray(q, dtype=np.float32)
    torch = sys.modules.get("torch")
    if torch is None:  # numpy's BLAS takes aligned rows only (callers pass big rows where blas_takes them)
        theirs_np = theirs_np if theirs_np.flags.aligned else np.array(theirs_np)
        return (theirs_np @ ours_np[0])[None] if len(ours_np) == 1 else ours_np @ theirs_np.T
    theirs, ours = torch.from_numpy(theirs_np), torch.from_numpy(ours_np)
    if len(ours) == 1:  # a matrix-vector product: at 10,000 rows 1.19 ms, where a 1-row matmul took 1.44
        return torch.mv(theirs, ours[0]).numpy()[None]
    return (ours @ theirs.T).numpy()


def blas_takes(rows: np.ndarray) -> bool:
    """Whether :func:`inner_products` scores ``rows`` where they lie: always once torch is loaded; else
    (numpy's BLAS) when they are aligned, which the rows of an index file mapped from disk are not
    (FAISS writes them at an odd offset): those are left to FAISS's own search rather than copied."""
    return "torch" in sys.modules or bool(rows.flags.aligned)


class RowsById:
    """Where each id of an exact index lies among its rows: the ids' sorting order, kept while the
    index is unchanged (its ``version``: an object that every change replaces)."""

    def __init__(self) -> None:
        self._kept: tuple[object, np.ndarray] | None = None

    def vectors(
        self, held: np.ndarray, xb: np.ndarray, ids: np.ndarray, version: object
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of those of ``ids`` among ``held`` (the index's ids, row by row), copied
        from its rows ``xb``. A stale order could only leave ids out: each row found is checked."""
        if not len(held) or not len(ids):
            return ids[:0], np.zeros((0, xb.shape[1]), np.float32)
        if self._kept is None or self._kept[0] is not version or len(self._kept[1]) != len(held):
            self._kept = (version, np.argsort(held, kind="stable"))
        order = self._kept[1]
        rows = order[np.searchsorted(held, ids, sorter=order).clip(0, len(held) - 1)]
        there = held[rows] == ids
        return ids[there], np.array(xb[rows[there]], dtype=np.float32)


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


__all__ = [
    "BLAS_THRESHOLD",
    "RowsById",
    "ScoreSample",
    "blas_takes",
    "hashed_first",
    "inner_products",
    "product_search",
]
