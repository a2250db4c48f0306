"""Second, finer codes of an approximate index's vectors, to rank its candidates (``...,Refine(SQ8)``).

An IVF index with 4-bit product-quantizer codes scanned in SIMD registers (FAISS's fast scan,
``PQ256x4fs``: 128 bytes a vector at 1024 dimensions) finds a query's neighbourhood several times faster
than one with 8-bit scalar codes (1 KB a vector), but it orders what it finds only roughly. So it is asked
for :data:`CANDIDATES_PER_HIT` candidates per hit wanted, and a second set of codes of every vector,
looked up by id, ranks those. The spec says so in FAISS's own factory syntax:
``IVF2048_HNSW32,PQ256x4fs,Refine(SQ8)``.

FAISS's ``IndexRefine`` would do this, but it can neither take the store's ids nor remove a vector, so
the second codes are an ``IndexIDMap2`` over flat codes (:class:`RefineCodes`), kept beside the IVF
index in a file of its own (``<index>.refine``) and memory-mapped when read for searching: a query
touches only its candidates' pages.
"""

from __future__ import annotations

import re
from typing import Any

import faiss
import numpy as np

from ..errors import UsageError
from ..idsets import IdSetSummary, summarize_ids
from .results import Result, best_k

#: Candidates asked of the fast index for each hit wanted (recall 0.957 at 1M vectors with 16, where the
#: same search with 10 reached 0.952: BENCHMARKS.md).
CANDIDATES_PER_HIT = 16
#: At least this many candidates, whatever ``k`` (a k=1 search still ranks a neighbourhood).
MIN_CANDIDATES = 64

_REFINE = re.compile(r"^(?P<base>.+),\s*Refine\((?P<codes>[^()]+)\)$")


def split_spec(spec: str) -> tuple[str, str | None]:
    """``(the IVF spec, the refine codes' spec or None)`` of an index spec."""
    match = _REFINE.match(spec.strip())
    return (match["base"].strip(), match["codes"].strip()) if match else (spec, None)


def candidates_for(k: int) -> int:
    """How many candidates the fast index returns for a search of ``k`` hits."""
    return max(MIN_CANDIDATES, CANDIDATES_PER_HIT * int(k))


class RefineCodes:
    """Flat codes (``SQ8``, ``SQfp16``, ``Flat``) of every vector of an index, by the store's ids."""

    def __init__(self, dim: int, spec: str, index: Any = None) -> None:
        self.dim, self.spec = int(dim), spec
        if index is None:
            try:
                codes = faiss.index_factory(self.dim, spec, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as exc:
                raise UsageError(f"invalid refine codes {spec!r}: {exc}") from None
            if not isinstance(codes, faiss.IndexFlatCodes):
                raise UsageError(f"refine codes must be flat codes such as SQ8, SQfp16 or Flat, got {spec!r}")
            index = faiss.IndexIDMap2(codes)  # faiss's wrapper keeps ``codes`` alive with it
        self._index: Any = index

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def raw(self) -> Any:
        """The FAISS index (``IndexIDMap2`` over flat codes), for saving."""
        return self._index

    def summary(self) -> IdSetSummary:
        """Count, max id and checksum of the ids held."""
        return summarize_ids(self.ids())

    def ids(self) -> np.ndarray:
        """The ids, in the order the codes are held."""
        return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)

    def train(self, vectors: np.ndarray) -> None:
        if not self._index.is_trained:
            self._index.train(vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add_with_ids(vectors, ids)

    def remove(self, selector: Any) -> int:
        return int(self._index.remove_ids(selector))

    def codes(self) -> np.ndarray:
        """``(n, code_size)`` code bytes, in the order of :meth:`ids` (a view into FAISS memory)."""
        flat: Any = faiss.downcast_index(self._index.index)
        n = self.ntotal
        return faiss.rev_swig_ptr(flat.codes.data(), n * flat.code_size).reshape(n, flat.code_size)

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """The code bytes ``vectors`` get."""
        return faiss.downcast_index(self._index.index).sa_encode(np.ascontiguousarray(vectors, np.float32))

    def rank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> Result:
        """The best ``k`` of each row of ``candidates`` ``(nq, c)`` (ids, -1 for none) by the scores of
        these codes, as a trimmed search result."""
        found = np.unique(candidates[candidates >= 0])
        scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
        if len(found):
            vectors = self._index.reconstruct_batch(found)
            at = np.searchsorted(found, candidates).clip(0, len(found) - 1)
            live = candidates >= 0
            for row, query in enumerate(queries):
                scores[row, live[row]] = vectors[at[row, live[row]]] @ query
        return best_k(scores, candidates, k)


__all__ = ["CANDIDATES_PER_HIT", "MIN_CANDIDATES", "RefineCodes", "candidates_for", "split_spec"]
