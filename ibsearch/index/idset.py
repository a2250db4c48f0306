"""Sets of vector ids: the summary compared with the database, and FAISS selectors for filters."""

from __future__ import annotations

from typing import Any, NamedTuple

import faiss
import numpy as np

# Same function as the store computes in SQL (tests check both agree); see IdSetSummary.
_CHECK_P = 4294967291
_CHECK_A = 1640531527
_CHECK_MOD = (1 << 61) - 1


class IdSetSummary(NamedTuple):
    """Count, largest id and an order-independent checksum of a set of ids.

    A plain tuple: it compares equal to the store's summary of the same ids, so the engine can tell
    whether an index file still matches the database without either package importing the other.
    """

    size: int  # number of ids
    max_id: int  # largest id, -1 when empty
    checksum: int  # order-independent hash of the ids, 0 when empty


def summarize_ids(ids: np.ndarray) -> IdSetSummary:
    """Summarize an array of distinct non-negative int64 ids (any order)."""
    arr = np.asarray(ids, dtype=np.int64).ravel()
    if arr.size == 0:
        return IdSetSummary(0, -1, 0)
    id_sum = int(arr.sum(dtype=np.int64))
    id_mix = int((((arr % _CHECK_P) * _CHECK_A) % _CHECK_P).sum(dtype=np.int64))
    return IdSetSummary(int(arr.size), int(arr.max()), (id_sum * 0x9E3779B1 + id_mix) % _CHECK_MOD)


def as_ids(ids: Any) -> np.ndarray:
    """``ids`` as a contiguous 1-D int64 array."""
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).ravel())


class Selector:
    """A FAISS ``IDSelector`` accepting exactly ``allowed`` ids, plus the memory it points into.

    FAISS keeps a raw pointer to the numpy buffer, so the buffer lives on this object; keep the
    ``Selector`` alive for as long as a search uses ``.sel``. A bitmap (one bit per id up to the
    largest) is used while it stays small, since its test is a single load; otherwise a hash set.
    """

    def __init__(self, allowed: np.ndarray) -> None:
        self.ids = np.unique(as_ids(allowed))  # sorted, distinct
        self.ids = self.ids[self.ids >= 0]
        top = int(self.ids[-1]) if self.ids.size else 0
        if (top + 8) // 8 <= max(1 << 20, 16 * self.ids.size):
            bits = np.zeros(top + 1, dtype=bool)
            bits[self.ids] = True
            self._buffer = np.packbits(bits, bitorder="little")
            self.sel: faiss.IDSelector = faiss.IDSelectorBitmap(
                self._buffer.size, faiss.swig_ptr(self._buffer)
            )
        else:
            self._buffer = self.ids
            self.sel = faiss.IDSelectorBatch(self._buffer.size, faiss.swig_ptr(self._buffer))

    def __len__(self) -> int:
        return int(self.ids.size)
