"""The rows of an index file, compared with the vectors they were made from (for ``ibsearch check``).

An exact index holds each vector's bytes. An approximate one holds codes: the vector itself (IVF-Flat)
or its quantized residual to its list's centroid (IVF-SQ8, fp16, fast-scan PQ, whose packed blocks are
unpacked first), and a refined kind also the finer codes it ranks with. Either way, encoding the stored
vector again for the list that holds it gives the very code bytes when the row is sound, so one bytewise
comparison checks both kinds, with no tolerance to guess.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from .faiss_index import FaissIndex
from .fastscan import is_fast_scan, list_codes
from .refine import RefineCodes


class IndexRows:
    """The ids, list numbers and code bytes of every row of ``index``, sorted by id (and the same of
    its refine codes, for a refined kind: both must match)."""

    def __init__(self, index: FaissIndex) -> None:
        self.index = index
        raw: Any = index._index
        if not index.approximate:
            ids, vectors = index.vectors_view()
            self._ivf: Any = None
            self._lists = np.zeros(len(ids), dtype=np.int64)
            codes = vectors.view(np.uint8).reshape(len(ids), 4 * index.dim)
        else:
            self._ivf = faiss.downcast_index(faiss.extract_index_ivf(raw))
            ids, self._lists, codes = _ivf_rows(self._ivf)
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self._order = order
        self._codes = codes
        self._refine = index._refine

    def __len__(self) -> int:
        return len(self.ids)

    def differing(self, ids: np.ndarray, vectors: np.ndarray) -> list[int]:
        """The ids among ``ids`` (held by the index) whose row is not what ``vectors`` give."""
        if not len(self.ids):
            return []
        at = np.searchsorted(self.ids, ids).clip(0, len(self.ids) - 1)
        present = self.ids[at] == ids  # ids missing from the index are the id summary's business
        rows = self._order[at[present]]
        expected = self._encode(np.ascontiguousarray(vectors[present], dtype=np.float32), self._lists[rows])
        # Bytes, not values: a NaN row must equal a NaN row, and nothing else counts as equal.
        same = (self._codes[rows] == expected).all(axis=1)
        if self._refine is not None:
            same &= _refine_rows_match(self._refine, ids[present], vectors[present])
        return [int(i) for i in ids[present][~same]]

    def _encode(self, vectors: np.ndarray, lists: np.ndarray) -> np.ndarray:
        if self._ivf is None:
            return vectors.view(np.uint8).reshape(len(vectors), 4 * self.index.dim)
        out = np.empty((len(vectors), self._ivf.code_size), dtype=np.uint8)
        if len(vectors):
            lists = np.ascontiguousarray(lists, dtype=np.int64)
            self._ivf.encode_vectors(len(vectors), faiss.swig_ptr(vectors), faiss.swig_ptr(lists),
                                     faiss.swig_ptr(out), False)  # fmt: skip
        return out


def _refine_rows_match(refine: RefineCodes, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """For each of ``ids``, whether its refine codes are what its vector gives (False when missing)."""
    held = refine.ids()
    order = np.argsort(held, kind="stable")
    at = np.searchsorted(held, ids, sorter=order).clip(0, max(len(held) - 1, 0))
    rows = order[at] if len(held) else at
    present = held[rows] == ids if len(held) else np.zeros(len(ids), dtype=bool)
    expected = refine.encode(vectors) if len(ids) else np.zeros((0, 0), np.uint8)
    match = np.zeros(len(ids), dtype=bool)
    match[present] = (refine.codes()[rows[present]] == expected[present]).all(axis=1)
    return match


def _ivf_rows(ivf: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, list numbers, codes (n, code_size))`` of every row of an IVF index."""
    lists: Any = ivf.invlists
    ids, numbers, codes = [], [], []
    for i in range(ivf.nlist):
        n = lists.list_size(i)
        if n:
            ids.append(faiss.rev_swig_ptr(lists.get_ids(i), n).astype(np.int64))
            numbers.append(np.full(n, i, dtype=np.int64))
            codes.append(
                list_codes(ivf, i)
                if is_fast_scan(ivf)
                else faiss.rev_swig_ptr(lists.get_codes(i), n * ivf.code_size).reshape(n, -1).copy()
            )
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, ivf.code_size), np.uint8)
    return np.concatenate(ids), np.concatenate(numbers), np.concatenate(codes)


__all__ = ["IndexRows"]
