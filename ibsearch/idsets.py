"""The summary of a set of vector ids that the database and an index file are compared by.

The store computes it in SQL over its rows, an index in numpy over the ids it holds; both use the
constants and the formula here, so the two summaries are equal exactly when the sets are (up to
checksum collisions, which need a deliberately crafted id set) without either package importing
the other.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

CHECK_P = 4294967291  # largest prime below 2**32
CHECK_A = 1640531527  # odd multiplier below 2**31, so (id % P) * A stays below 2**63 in SQLite
_CHECK_MOD = (1 << 61) - 1
_CHECK_MUL = 0x9E3779B1

#: The per-id term as an SQL aggregate over a column ``id`` (what :func:`from_sums` takes as ``id_mix``).
MIX_SQL = f"sum(((id % {CHECK_P}) * {CHECK_A}) % {CHECK_P})"


class IdSetSummary(NamedTuple):
    """Count, largest id and an order-independent checksum of a set of ids."""

    size: int  # number of ids
    max_id: int  # largest id, -1 when empty
    checksum: int  # order-independent hash of the ids, 0 when empty


def from_sums(count: int, max_id: int | None, id_sum: int | None, id_mix: int | None) -> IdSetSummary:
    """A summary from ``count``, ``max(id)``, ``sum(id)`` and ``sum((id % P) * A % P)`` (see MIX_SQL)."""
    if not count:
        return IdSetSummary(0, -1, 0)
    checksum = (int(id_sum or 0) * _CHECK_MUL + int(id_mix or 0)) % _CHECK_MOD
    return IdSetSummary(int(count), int(max_id if max_id is not None else -1), checksum)


def summarize_ids(ids: np.ndarray) -> IdSetSummary:
    """Summarize an array of distinct non-negative int64 ids (any order)."""
    arr = np.asarray(ids, dtype=np.int64).ravel()
    if arr.size == 0:
        return IdSetSummary(0, -1, 0)
    id_mix = int((((arr % CHECK_P) * CHECK_A) % CHECK_P).sum(dtype=np.int64))
    return from_sums(int(arr.size), int(arr.max()), int(arr.sum(dtype=np.int64)), id_mix)


__all__ = ["MIX_SQL", "IdSetSummary", "from_sums", "summarize_ids"]
