"""The arrays going into and coming out of a search: query matrices, and ``(scores, ids)`` results."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UsageError

Result = tuple[np.ndarray, np.ndarray]


def as_matrix(vectors: Any, dim: int, what: str) -> np.ndarray:
    """``vectors`` as a contiguous float32 ``(n, dim)`` matrix (one vector may come as ``(dim,)``)."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise UsageError(f"{what} have shape {np.shape(vectors)}; this index holds (n, {dim}) vectors")
    return np.ascontiguousarray(arr)


def trim_results(scores: np.ndarray, ids: np.ndarray) -> Result:
    """Drop trailing result columns that no query filled (id -1); remaining gaps get score -inf."""
    filled = (ids >= 0).any(axis=0)
    width = int(np.flatnonzero(filled)[-1]) + 1 if filled.any() else 0
    scores, ids = scores[:, :width].copy(), ids[:, :width].copy()
    scores[ids < 0] = -np.inf
    return scores, ids


def best_k(scores: np.ndarray, ids: np.ndarray, k: int) -> Result:
    """The ``k`` best columns of each row (by score, -inf and id -1 last), trimmed like a search result."""
    scores = np.where(ids >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return trim_results(np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1))


__all__ = ["Result", "as_matrix", "best_k", "trim_results"]
