"""The rows of an index file, compared with the vectors they were made from (for ``ibsearch check``).

An exact index holds each vector's bytes. An approximate one holds codes: the vector itself (IVF-Flat)
or its quantized residual to its list's centroid (IVF-SQ8, fp16, fast-scan PQ, whose packed blocks are
unpacked first), and a refined kind also the twin's finer codes it ranks with. Either way, encoding the
stored vector again for the list that holds it gives the very code bytes when the row is sound, so one
bytewise comparison checks every kind, with no tolerance to guess.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from .faiss_index import FaissIndex
from .lists import list_codes


class _Rows:
    """Ids, list numbers and code bytes of every row of one FAISS index (exact or IVF), by id."""

    def __init__(self, ids: np.ndarray, lists: np.ndarray, codes: np.ndarray, ivf: Any, dim: int) -> None:
        self.order = np.argsort(ids, kind="stable")
        self.ids, self.lists, self.codes, self.ivf, self.dim = ids[self.order], lists, codes, ivf, dim

    @classmethod
    def of_ivf(cls, ivf: Any) -> _Rows:
        ivf = faiss.downcast_index(ivf)
        return cls(*_ivf_rows(ivf), ivf, ivf.d)

    def same(self, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """For each of ``ids``: False when its row is missing or is not what its vector gives."""
        if not len(self.ids):
            return np.zeros(len(ids), dtype=bool)
        at = np.searchsorted(self.ids, ids).clip(0, len(self.ids) - 1)
        present = self.ids[at] == ids
        rows = self.order[at[present]]
        expected = self._encode(np.ascontiguousarray(vectors[present], dtype=np.float32), self.lists[rows])
        same = np.zeros(len(ids), dtype=bool)
        # Bytes, not values: a NaN row must equal a NaN row, and nothing else counts as equal.
        same[present] = (self.codes[rows] == expected).all(axis=1)
        return same

    def _encode(self, vectors: np.ndarray, lists: np.ndarray) -> np.ndarray:
        if self.ivf is None:
            return vectors.view(np.uint8).reshape(len(vectors), 4 * self.dim)
        out = np.empty((len(vectors), self.ivf.code_size), dtype=np.uint8)
        if len(vectors):
            lists = np.ascontiguousarray(lists, dtype=np.int64)
            self.ivf.encode_vectors(len(vectors), faiss.swig_ptr(vectors), faiss.swig_ptr(lists),
                                    faiss.swig_ptr(out), False)  # fmt: skip
        return out


class IndexRows:
    """The rows of ``index`` (and of its refine twin, for a refined kind: both must match), by id."""

    def __init__(self, index: FaissIndex) -> None:
        self.index = index
        if not index.approximate:
            ids, vectors = index.vectors_view()
            codes = vectors.view(np.uint8).reshape(len(ids), 4 * index.dim)
            self._main = _Rows(ids, np.zeros(len(ids), dtype=np.int64), codes, None, index.dim)
        else:
            self._main = _Rows.of_ivf(faiss.extract_index_ivf(index._index))
        self._twin = None if index._refine is None else _Rows.of_ivf(index._refine.raw)
        self.ids = self._main.ids

    def __len__(self) -> int:
        return len(self.ids)

    def differing(self, ids: np.ndarray, vectors: np.ndarray) -> list[int]:
        """The ids among ``ids`` (held by the index) whose row is not what ``vectors`` give."""
        if not len(self.ids):
            return []
        at = np.searchsorted(self.ids, ids).clip(0, len(self.ids) - 1)
        present = self.ids[at] == ids  # ids missing from the index are the id summary's business
        ids, vectors = ids[present], vectors[present]
        same = self._main.same(ids, vectors)
        if self._twin is not None:
            same &= self._twin.same(ids, vectors)
        return [int(i) for i in ids[~same]]


def _ivf_rows(ivf: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, list numbers, codes (n, code_size))`` of every row of an IVF index."""
    lists: Any = ivf.invlists
    ids, numbers, codes = [], [], []
    for i in range(ivf.nlist):
        n = lists.list_size(i)
        if n:
            ids.append(faiss.rev_swig_ptr(lists.get_ids(i), n).astype(np.int64))
            numbers.append(np.full(n, i, dtype=np.int64))
            codes.append(list_codes(ivf, i))
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, ivf.code_size), np.uint8)
    return np.concatenate(ids), np.concatenate(numbers), np.concatenate(codes)


__all__ = ["IndexRows"]
