"""One FAISS index per modality: inner product over L2-normalized float32 vectors, int64 ids.

The ids are the store's vector ids, so a hit maps straight back to its database row. The default
is exact search (``IndexIDMap2(IndexFlatIP)``); an IVF factory string (``"IVF4096,Flat"``,
``"IVF4096_HNSW32,SQ8"``) gives an approximate index for large libraries (:mod:`.policy` says which,
:mod:`.builder` trains and tunes it), and one ending in ``,Refine(SQ8)`` ranks that index's candidates
with second, finer codes of the same vectors (:mod:`.refine`). HNSW alone is refused: FAISS cannot
remove vectors from it, and an index that cannot follow deletions would go stale.

An index file is a derived cache: :meth:`FaissIndex.save` writes it atomically with a JSON sidecar
(:mod:`.persist`: dimension, model, count and a checksum of the id set, how it was built and tuned)
that the engine compares with the database.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import faiss
import numpy as np

from ..errors import LibraryError, UsageError
from ..idsets import IdSetSummary, summarize_ids
from .exact import ScoreSample, blas_takes, product_search
from .lists import (
    add_by_nearest_centroid,
    clear_block_tails,
    coarse_lists,
    graph_quantizer,
    is_fast_scan,
    list_ids,
    search_lists,
)
from .persist import (
    SIDECAR_FORMAT,
    BuildRecord,
    IndexMeta,
    StaleIndexLoad,
    damaged_file,
    read_index,
    read_meta,
    refine_path,
    same_file,
    write_pair,
)
from .refine import RefineCodes, split_spec
from .results import as_matrix, trim_results
from .selector import Selector, as_ids, search_gathered
from .tuning import DEFAULT_TUNING, SearchTuning

log = logging.getLogger(__name__)

# faiss's bundled stubs lack the keyword constructors of SearchParameters*; those calls go through
# this untyped alias.
_faiss: Any = faiss

EXACT = "Flat"


class StaleIndexError(LibraryError):
    """An index file is missing, unreadable or disagrees with its sidecar (the message says which;
    the caller says what is done about it: an index is rebuilt from the database)."""


class FaissIndex:
    """A FAISS index over one modality's vectors, keyed by the store's vector ids.

    ``FaissIndex(dim)`` is exact (``spec="Flat"``); ``FaissIndex(dim, "IVF1024,Flat", nprobe=32)`` is
    approximate and must be trained (:meth:`train`) before :meth:`add`.
    """

    def __init__(self, dim: int, spec: str = EXACT, *, nprobe: int = 16, model_id: str | None = None) -> None:
        self.dim = int(dim)
        self.spec = spec
        self.nprobe = int(nprobe)
        self.model_id = model_id
        self.read_only = False
        self.record = BuildRecord()  # when and why it was built; saved in the sidecar
        base, codes = split_spec(spec)
        self._refine: RefineCodes | None = None  # the twin holding ``codes``, made when trained
        if codes:
            RefineCodes.make(self.dim, 1, codes)  # refused now, not when a build is under way
        if spec == EXACT:
            self._index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        else:
            try:
                self._index = faiss.index_factory(self.dim, base, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as exc:
                raise UsageError(f"invalid FAISS index spec {spec!r}: {exc}") from None
            self._check_ivf()

    def _check_ivf(self) -> None:
        if faiss.try_extract_index_ivf(self._index) is None:
            raise UsageError(
                f"index spec {self.spec!r} is not supported: use 'Flat' (exact) or an IVF factory string "
                "such as 'IVF4096,Flat' (HNSW cannot delete vectors, so it would go stale)"
            )

    @classmethod
    def _wrap(
        cls, index: Any, meta: IndexMeta, read_only: bool, nprobe: int, refine: RefineCodes | None
    ) -> FaissIndex:
        self = cls.__new__(cls)
        self.dim, self.spec, self.nprobe, self.model_id = meta.dim, meta.spec, nprobe, meta.model_id
        self._index, self.read_only, self.record, self._refine = index, read_only, meta.record, refine
        if self.spec != EXACT:
            self._check_ivf()
        return self

    @property
    def approximate(self) -> bool:
        """True for an IVF index (results are tuned to a recall target, not guaranteed exact)."""
        return self.spec != EXACT

    @property
    def nlist(self) -> int:
        """Inverted lists of an IVF index (0 for an exact one)."""
        return int(self._ivf().nlist) if self.approximate else 0

    # ------------------------------------------------------------------ contents

    @property
    def ntotal(self) -> int:
        """Number of vectors held."""
        return int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        """False for an IVF index that still needs :meth:`train`."""
        return bool(self._index.is_trained)

    def ids(self) -> np.ndarray:
        """All ids held, as int64 (insertion order for exact indexes, list order for IVF)."""
        return self._held_ids()

    def _held_ids(self) -> np.ndarray:
        if self.spec == EXACT:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        return list_ids(self._ivf())

    def summary(self) -> IdSetSummary:
        """Count, max id and checksum of the ids held (compare with ``Store.id_summary``)."""
        return summarize_ids(self.ids())

    def vectors_view(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (n,), vectors (n, dim))`` of an exact index without copying the vectors.

        The vector array points into FAISS memory: it is valid only until the next add/remove.
        """
        if self.spec != EXACT:
            raise UsageError("vectors_view() needs an exact ('Flat') index")
        flat: Any = faiss.downcast_index(self._index.index)
        n = int(self._index.ntotal)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        xb = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)
        return faiss.rev_swig_ptr(self._index.id_map.data(), n), xb

    def _ivf(self) -> Any:
        return faiss.extract_index_ivf(self._index)

    @property
    def raw(self) -> Any:
        """The FAISS index itself (to copy to a GPU, or to time FAISS without ibsearch's choices)."""
        return self._index

    # ------------------------------------------------------------------ changes

    def _writable(self) -> None:
        if self.read_only:
            raise UsageError(
                "this index was loaded memory-mapped (read-only); load it without mmap to change it"
            )

    def train(self, vectors: np.ndarray) -> None:
        """Train an IVF index on ``vectors`` ``(n, dim)`` (a no-op for exact indexes)."""
        self._writable()
        if not self._index.is_trained:
            mat = as_matrix(vectors, self.dim, "training vectors")
            self._index.train(mat)
            codes = split_spec(self.spec)[1]
            if codes:
                self._refine = RefineCodes.mirror(self._ivf(), codes)
                self._refine.train(mat)

    def add(self, ids: Any, vectors: Any) -> None:
        """Add ``vectors`` ``(n, dim)`` float32 (L2-normalized) under ``ids`` ``(n,)`` int64.

        Ids must not already be in the index (the store never reuses one); FAISS does not check.
        """
        self._writable()
        ids_arr = as_ids(ids)
        mat = as_matrix(vectors, self.dim, "vectors")
        if len(ids_arr) != len(mat):
            raise UsageError(f"{len(ids_arr)} ids given for {len(mat)} vectors")
        if not self._index.is_trained:
            raise LibraryError(
                f"index {self.spec!r} is not trained yet; call train() with sample vectors first"
            )
        if not len(mat):
            return
        graph = self._graph_quantizer()
        centroids = None if graph is None else self._centroids(graph)  # the twin's are the same
        if centroids is None:
            self._index.add_with_ids(mat, ids_arr)
        else:  # see lists.add_by_nearest_centroid
            add_by_nearest_centroid(self._ivf(), centroids, mat, ids_arr)
        if self._refine is not None:
            self._refine.add(ids_arr, mat, centroids)
        self.record = self.record.changed_by(len(mat))

    def _graph_quantizer(self) -> Any:
        """The HNSW coarse quantizer of an IVF index (``IVF4096_HNSW32,...``), or None."""
        return graph_quantizer(self._ivf()) if self.approximate else None

    def _centroids(self, quantizer: Any) -> np.ndarray:
        cached = getattr(self, "_centroid_cache", None)
        if cached is None:
            cached = self._centroid_cache = quantizer.reconstruct_n(0, quantizer.ntotal)
        return np.ascontiguousarray(cached, dtype=np.float32)

    def remove(self, ids: Any) -> int:
        """Remove ``ids`` (those not present are ignored); returns how many were removed."""
        self._writable()
        sel = Selector(as_ids(ids))
        if not len(sel) or not self._index.ntotal:
            return 0
        removed = int(self._index.remove_ids(sel.sel))
        if removed and self.approximate and is_fast_scan(self._ivf()):
            clear_block_tails(self._ivf())
        if self._refine is not None:
            self._refine.remove(sel.sel)
        self.record = self.record.changed_by(removed)
        return removed

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: Any,
        k: int,
        allowed_ids: Any = None,
        *,
        nprobe: int | None = None,
        tuning: SearchTuning = DEFAULT_TUNING,
        sample: ScoreSample | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product for each query.

        ``queries`` is ``(nq, dim)`` (or ``(dim,)``) float32. ``allowed_ids``, when given, restricts the
        search to those ids inside FAISS (an ``IDSelector``), so ``k`` hits come back whenever ``k``
        allowed vectors exist. Returns ``(scores (nq, k'), ids (nq, k'))`` sorted best first, where
        ``k' = min(k, candidates)``: asking for more than the index holds is fine, and an empty index or
        an empty filter gives ``k' = 0``. Only an approximate (IVF) index can leave gaps inside ``k'``;
        they hold id -1 and score -inf. ``nprobe`` overrides :attr:`nprobe` for this search (IVF only);
        ``tuning`` chooses how an exact search is run (a few queries: a BLAS product, :mod:`.exact`).
        Both reach FAISS as this search's own ``SearchParameters``: no FAISS setting that another search
        would see is changed. ``sample`` receives the queries' scores at a sample of the rows where the
        search scores every row itself (:class:`~.exact.ScoreSample`).
        """
        q = as_matrix(queries, self.dim, "queries")
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        nq = len(q)
        sel = None if allowed_ids is None else Selector(allowed_ids)
        held = int(self._index.ntotal)
        kk = min(int(k), held, held if sel is None else len(sel))
        if kk == 0 or nq == 0:
            return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)
        if self.spec == EXACT and nq <= tuning.exact_product_most and blas_takes(self.vectors_view()[1]):
            return product_search(*self.vectors_view(), q, kk, None if sel is None else sel.ids, sample)
        probes = min(int(nprobe or self.nprobe), self.nlist) if self.approximate else 0
        if probes:  # fewer queries than threads: the threads share each query's lists instead (but a
            # fast-scan search of one query was faster on one thread, BENCHMARKS.md). FAISS 1.15 takes
            # no parallel mode per search; it is this index's own (its results do not depend on it).
            few = nq < faiss.omp_get_max_threads() and self._refine is None
            self._ivf().parallel_mode = 1 if few else 0
        # A graph quantizer must look at more candidates than the lists it is asked for.
        graph = _faiss.SearchParametersHNSW(efSearch=max(16, 2 * probes)) if self._graph_quantizer() else None
        if self._refine is not None:
            coarse = coarse_lists(self._ivf(), q, probes, graph)  # one coarse search for both indexes
            _, found = search_lists(self._ivf(), q, self._refine.wanted(kk, held), coarse, sel and sel.sel)
            return self._refine.rank(q, found, kk, coarse)
        if sel is None:
            params = _faiss.SearchParametersIVF(nprobe=probes, quantizer_params=graph) if probes else None
        elif self.spec == EXACT and nq >= tuning.filtered_blas_min_queries:
            return trim_results(*search_gathered(*self.vectors_view(), q, kk, sel))
        elif self.spec == EXACT:
            params = _faiss.SearchParameters(sel=sel.sel)
        else:
            params = _faiss.SearchParametersIVF(sel=sel.sel, nprobe=probes, quantizer_params=graph)
        return trim_results(*self._index.search(q, kk, params=params))

    # ------------------------------------------------------------------ files

    def meta(self) -> IndexMeta:
        """The sidecar describing the current contents."""
        count, max_id, checksum = self.summary()
        return IndexMeta(
            SIDECAR_FORMAT,
            self.spec,
            self.dim,
            self.model_id,
            count,
            max_id,
            checksum,
            time.time(),
            self.record,
        )

    def save(self, path: str | os.PathLike[str]) -> IndexMeta:
        """Write the index to ``path`` and its sidecar to ``<path>.json``, each atomically.

        The index goes first: a crash between the two leaves an old sidecar that no longer matches
        the index (its size, its ids), which :meth:`load` reports as stale, so nothing is ever
        silently wrong.
        """
        return write_pair(path, self._index, self.meta(), None if self._refine is None else self._refine.raw)

    @staticmethod
    def read_meta(path: str | os.PathLike[str]) -> IndexMeta | None:
        """The sidecar of ``path`` without loading the index; None when missing or unreadable."""
        return read_meta(path)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = False, nprobe: int | None = None
    ) -> FaissIndex:
        """Read an index saved by :meth:`save` and verify it against its sidecar.

        ``mmap=True`` maps the file instead of reading it (read-only; pages load as searches touch
        them). ``nprobe`` defaults to the tuned value in the sidecar. Raises :class:`StaleIndexError`
        when either file is missing or unreadable, or the contents disagree with the sidecar
        (dimension, size, count, id checksum, and the checksum of the bytes it recorded: every byte of
        a pair is read once here, on all cores, whether the file is then mapped or read).
        """
        target = os.fspath(path)
        meta = read_meta(target)
        if meta is None:
            raise StaleIndexError(f"index file {target!r} has no readable sidecar")
        damaged = damaged_file(target, meta) if same_file(target, meta) else None
        if damaged is not None:
            raise StaleIndexError(
                f"cannot read index file {damaged!r}: it is damaged (its bytes differ from the checksum "
                "saved with it)"
            )
        try:
            if mmap and not same_file(target, meta):
                raise StaleIndexLoad("size")  # never map a file that may be shorter than FAISS will read
            index = read_index(target, meta, mmap=mmap)
            codes = split_spec(meta.spec)[1]
            refine = None if codes is None else RefineCodes(
                read_index(refine_path(target), meta, mmap=mmap), meta.record.tuning
            )  # fmt: skip
        except StaleIndexLoad:
            raise StaleIndexError(f"cannot read index file {target!r}: it is damaged or truncated") from None
        tuned = meta.record.tuning.nprobe if meta.record.tuning else 16
        try:
            loaded = cls._wrap(index, meta, read_only=mmap, nprobe=nprobe or tuned, refine=refine)
        except UsageError:
            loaded = None  # the sidecar names another kind than the file holds
        if (
            loaded is None
            or not same_file(target, meta)
            or index.d != meta.dim
            or index.metric_type != faiss.METRIC_INNER_PRODUCT
            or (meta.spec == EXACT) != (faiss.try_extract_index_ivf(index) is None)
            or loaded.summary() != meta.summary
            or (refine is not None and (refine.raw.d != meta.dim or refine.summary() != meta.summary))
            or (refine is not None and refine.raw.nlist != loaded.nlist)
        ):
            raise StaleIndexError(f"index file {target!r} does not match its sidecar (an interrupted save?)")
        return loaded

    @classmethod
    def build(
        cls,
        dim: int,
        chunks: Iterable[tuple[np.ndarray, np.ndarray]],
        *,
        spec: str = EXACT,
        model_id: str | None = None,
        nprobe: int = 16,
    ) -> FaissIndex:
        """A new index from ``(ids, vectors)`` chunks (e.g. ``store.vectors.chunks``).

        An IVF index is trained on the first chunk, so make that chunk large (>= 39 vectors per list).
        """
        index = cls(dim, spec, nprobe=nprobe, model_id=model_id)
        for ids, vectors in chunks:
            if not index.is_trained:
                index.train(vectors)
            index.add(ids, vectors)
        return index
