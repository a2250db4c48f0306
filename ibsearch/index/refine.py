"""Second, finer codes of an approximate index's vectors, to rank its candidates (``...,Refine(SQfp16)``).

An IVF index with 4-bit product-quantizer codes scanned in SIMD registers (FAISS's fast scan,
``PQ256x4fs``: 128 bytes a vector at 1024 dimensions) finds a query's neighbourhood several times faster
than one with 8-bit scalar codes (1 KB a vector), but it orders what it finds only roughly. So it is asked
for :func:`candidates_for` candidates (as many as the index was tuned to), and a second set of codes of
every vector ranks those. The spec says so in FAISS's own factory syntax:
``IVF2048_HNSW32,PQ256x4fs,Refine(SQfp16)``.

FAISS's ``IndexRefine`` would do this, but it can neither take the store's ids nor remove a vector. The
second codes are instead a twin IVF index (:class:`RefineCodes`): the same centroids (a copy of the
quantizer), so every vector sits in the same list in both, and the codes of its residual (``SQ8`` or
``SQfp16`` of a residual is finer than of the vector itself). Ranking is a search of the twin over the
same lists that admits only the candidates (an ``IDSelectorBatch``): FAISS scores just those, in C++,
reading their codes where they lie. The twin is saved beside the index (``<index>.refine``) and
memory-mapped for searching.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faiss
import numpy as np

from ..errors import UsageError
from ..idsets import IdSetSummary, summarize_ids
from .lists import add_by_nearest_centroid, is_fast_scan, list_ids, search_lists
from .persist import Tuning
from .results import Result, trim_results

#: Candidates asked of the fast index for each hit wanted, unless tuned otherwise: at 1M x 1024 and
#: nprobe 36, recall@10 of held-out `mixture` queries was 0.925 / 0.942 / 0.953 with 64 / 100 / 160
#: candidates for k = 10 (BENCHMARKS.md). The tuner may raise it for the k it tunes (:mod:`.tuner`): in a
#: tight cluster the 4-bit codes order hundreds of near-equal members almost at random, so its true top
#: 10 lie anywhere among them. Hits beyond that k get this many candidates each.
CANDIDATES_PER_HIT = 16
#: At least this many candidates, whatever ``k`` (a k=1 search still ranks a neighbourhood).
MIN_CANDIDATES = 64
#: Batches of this many queries and more are ranked on several threads.
_THREADED_FROM = 4

_REFINE = re.compile(r"^(?P<base>.+),\s*Refine\((?P<codes>[^()]+)\)$")


def split_spec(spec: str) -> tuple[str, str | None]:
    """``(the IVF spec, the refine codes' spec or None)`` of an index spec."""
    match = _REFINE.match(spec.strip())
    return (match["base"].strip(), match["codes"].strip()) if match else (spec, None)


def candidates_for(k: int, tuning: Tuning | None = None) -> int:
    """How many candidates the fast index returns for a search of ``k`` hits: what ``tuning`` (an
    index's) chose for its ``k`` (pro rata for fewer hits), :data:`CANDIDATES_PER_HIT` for each hit more."""
    k = int(k)
    if tuning is None or not tuning.candidates:
        return max(MIN_CANDIDATES, CANDIDATES_PER_HIT * k)
    tuned = tuning.candidates * min(k, tuning.k) // tuning.k
    return max(MIN_CANDIDATES, tuned + CANDIDATES_PER_HIT * max(0, k - tuning.k))


class RefineCodes:
    """The twin IVF index holding the second codes (a FAISS index; see the module docstring);
    ``tuning``: the index's (how many candidates it ranks, :func:`candidates_for`)."""

    def __init__(self, index: Any, tuning: Tuning | None = None) -> None:
        self._index: Any = index  # as FAISS's factory and reader give it: the owning, downcast object
        self.tuning = tuning

    def wanted(self, k: int, most: int) -> int:
        """How many candidates to rank for ``k`` hits (:func:`candidates_for` under :attr:`tuning`) of an
        index holding ``most`` vectors."""
        return min(candidates_for(k, self.tuning), most)

    @staticmethod
    def make(dim: int, nlist: int, codes: str) -> Any:
        """An empty IVF index of ``nlist`` lists with codes ``codes``; a UsageError for codes that cannot
        be a twin (unknown to FAISS, or fast-scan codes, which rank no better than the index's own)."""
        try:
            twin: Any = faiss.index_factory(dim, f"IVF{nlist},{codes}", faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise UsageError(f"invalid refine codes {codes!r} (try SQ8, SQfp16 or Flat): {exc}") from None
        if is_fast_scan(twin):
            raise UsageError(f"refine codes {codes!r} are fast-scan codes; use SQ8, SQfp16 or Flat")
        return twin

    @classmethod
    def mirror(cls, base_ivf: Any, codes: str) -> RefineCodes:
        """An untrained twin of the trained IVF index ``base_ivf`` with codes ``codes`` (``SQ8``...)."""
        base: Any = faiss.downcast_index(base_ivf)
        twin = cls.make(base.d, base.nlist, codes)
        quantizer: Any = faiss.clone_index(base.quantizer)
        twin.quantizer, twin.own_fields = quantizer, True  # k-means is skipped: it is trained and full
        quantizer.this.disown()
        return cls(twin)

    @property
    def raw(self) -> Any:
        """The FAISS index, for saving."""
        return self._index

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        return list_ids(self._index)

    def summary(self) -> IdSetSummary:
        """Count, max id and checksum of the ids held."""
        return summarize_ids(self.ids())

    def train(self, vectors: np.ndarray) -> None:
        if not self._index.is_trained:
            self._index.train(vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray, centroids: np.ndarray | None) -> None:
        """Add ``vectors`` under ``ids``; ``centroids``: the index's (and so the twin's) centroids when
        its quantizer is a graph (see :func:`.lists.add_by_nearest_centroid`), else None."""
        if centroids is None:
            self._index.add_with_ids(vectors, ids)
        else:
            add_by_nearest_centroid(self._index, centroids, vectors, ids)

    def remove(self, selector: Any) -> int:
        return int(self._index.remove_ids(selector))

    def rank(
        self, queries: np.ndarray, candidates: np.ndarray, k: int, coarse: tuple[np.ndarray, np.ndarray]
    ) -> Result:
        """The best ``k`` of the ``candidates`` ``(nq, c)`` (ids, -1 for none) by these codes, searched
        in the lists the fast index probed (``coarse``, from :func:`.lists.coarse_lists`).

        Each query admits only its own candidates: one search for all queries admitting all of them
        scores every query against the others' candidates in its lists too (77 against 49 ms for 100
        queries at 1M vectors), so a batch is ranked query by query, on as many threads as FAISS uses
        (FAISS lets go of the GIL while it searches)."""
        n, k = len(queries), min(k, candidates.shape[1])
        scores, ids = np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)

        def one(row: int) -> None:
            mine = np.unique(candidates[row][candidates[row] >= 0])
            if len(mine):
                only = faiss.IDSelectorBatch(mine)
                part = (coarse[0][row : row + 1], coarse[1][row : row + 1])
                scores[row], ids[row] = search_lists(self._index, queries[row : row + 1], k, part, only)

        threads = faiss.omp_get_max_threads()
        self._index.parallel_mode = 1 if n < threads else 0
        if n < _THREADED_FROM:
            for row in range(n):
                one(row)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(one, range(n)))
        return trim_results(scores, ids)


__all__ = ["CANDIDATES_PER_HIT", "MIN_CANDIDATES", "RefineCodes", "candidates_for", "split_spec"]
