"""An index file as the database sees it now: the file's index, plus what changed since it was saved.

A searching process memory-maps a big index file (read-only). When the database has moved on since the
file was saved (a writer is at work, or was killed), the vectors the file lacks are held in a small
exact **delta** searched alongside it, and the ids it holds that the database no longer has are
**tombstones**, left out of every result; nothing is re-read or re-trained. A writer changes the index
itself; what it holds in a delta is merged when it saves (:meth:`LiveIndex.merged`).

Searches keep what exact search promised where that is cheap: a filter that allows few vectors
(``full_scan_below``) is answered by exact search over exactly those vectors, read from the database
through ``fetch``; a bigger filter runs inside the approximate search with more lists probed, and should
that find fewer than ``k`` allowed vectors, the exact search over them answers instead. So ``k`` hits
come back whenever ``k`` vectors match.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import faiss
import numpy as np

from ..devices import cuda_available
from ..errors import UsageError
from ..idsets import IdSetSummary, summarize_ids
from .exact import RowsById, ScoreSample
from .faiss_index import FaissIndex
from .persist import BuildRecord, IndexMeta
from .policy import DEFAULT_FULL_SCAN_BELOW
from .refine import split_spec
from .results import Result, best_k, trim_results
from .selector import as_ids, sorted_distinct
from .torch_index import TorchExactIndex
from .tuning import DEFAULT_TUNING, SearchTuning

log = logging.getLogger(__name__)

#: Reads stored vectors by id: ``fetch(ids) -> (ids found, vectors (n, dim))`` (``store.vectors.by_id``).
Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
#: Exact indexes this big are searched on a GPU when the device is "auto" and one is there.
GPU_MIN_VECTORS = 50_000
_EMPTY = np.zeros(0, dtype=np.int64)
_T = TypeVar("_T")
# faiss's bundled stubs lack the keyword constructors of SearchParameters*.
_faiss: Any = faiss
_TOMBSTONES_BY_WIDTH = 1024  # up to this many, ask for that many more hits and drop the tombstones


class _OfBase(Generic[_T]):
    """An attribute of a :class:`LiveIndex` that is its base index's (what kind of index it is)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, live: LiveIndex, owner: type | None = None) -> _T:
        return cast(_T, getattr(live.base, self.name))


class LiveIndex:
    """A :class:`FaissIndex` (:attr:`base`) that follows the database: delta, tombstones, exact small
    filters, GPU. It wraps the index and forwards what it is (``spec``, ``nprobe``...) to it."""

    def __init__(
        self,
        base: FaissIndex,
        fetch: Fetch | None = None,
        *,
        device: str | None = None,
        full_scan_below: int = DEFAULT_FULL_SCAN_BELOW,
    ) -> None:
        self.base = base  # the index of its file (or a new one): what a save writes once merged
        self.fetch = fetch  # stored vectors by id, for exact searches over a filter's vectors
        self.full_scan_below = full_scan_below  # the library's; a search's tuning may say otherwise
        self.delta: FaissIndex | None = None  # vectors the index itself does not hold (exact, in memory)
        self.tombstones: np.ndarray = _EMPTY  # sorted ids the index holds that were removed since
        self._device = device  # None: FAISS on the CPU; "auto"/"cuda"/"cpu": torch (or faiss-gpu)
        self._mirror: Any = None  # the index on the search device, made on first use
        self._rows = (RowsById(), RowsById())  # where the ids of the base and of the delta lie

    # ------------------------------------------------------------------ what it is (its base's)

    dim = _OfBase[int]()
    spec = _OfBase[str]()
    model_id = _OfBase[str | None]()
    nprobe = _OfBase[int]()  # lists probed by default (the tuned value of its sidecar)
    nlist = _OfBase[int]()
    approximate = _OfBase[bool]()
    read_only = _OfBase[bool]()  # its file is memory-mapped: changes go to the delta and tombstones
    record = _OfBase[BuildRecord]()

    @property
    def exact_scores(self) -> bool:
        """Whether the index scores with the vectors themselves (exact, or IVF with flat codes)."""
        ivf = None if not self.approximate else faiss.extract_index_ivf(self.base.raw)
        return ivf is None or isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFlat)

    @property
    def device(self) -> str | None:
        """Where it is searched: None for FAISS on the CPU, else torch (or faiss-gpu) on that device."""
        return self._device

    def search_on(self, device: str | None) -> None:
        """Search on ``device`` from now on (see :attr:`device`)."""
        if device != self._device:
            self._device, self._mirror = device, None

    def save(self, path: str | os.PathLike[str]) -> IndexMeta:
        """Save :attr:`base` (see :meth:`FaissIndex.save`); a pending delta must be :meth:`merged` first."""
        if self.pending:
            raise UsageError("this index holds changes beside its file; save the merged index instead")
        return self.base.save(path)

    # ------------------------------------------------------------------ contents

    @property
    def ntotal(self) -> int:
        held = self.base.ntotal - len(self.tombstones)
        return held + (self.delta.ntotal if self.delta is not None else 0)

    def ids(self) -> np.ndarray:
        held = self.base.ids()
        if len(self.tombstones):
            held = held[~np.isin(held, self.tombstones)]
        return held if self.delta is None else np.concatenate([held, self.delta.ids()])

    def vectors_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors (n, dim))`` of those of ``ids`` (int64) whose vectors the index holds as they
        are (an exact index's rows; the delta's), read from its memory: no database read. The rows of an
        approximate index are codes, not vectors: its ids are left out (read them from the store)."""
        parts = [(self.base, self._rows[0])] if not self.base.approximate else []
        if self.delta is not None:
            parts.append((self.delta, self._rows[1]))
        found = [rows.vectors(*part.vectors_view(), ids, part.record) for part, rows in parts]
        if not found:
            return ids[:0], np.zeros((0, self.dim), np.float32)
        return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])

    def summary(self) -> IdSetSummary:
        """Count, max id and checksum of the ids it holds now (compare with ``Store.id_summary``)."""
        return summarize_ids(self.ids())

    @property
    def pending(self) -> bool:
        """Whether a delta or tombstones wait to be merged into the index itself."""
        return self.delta is not None or bool(len(self.tombstones))

    def follow(self, db_ids: np.ndarray, fetch: Fetch) -> tuple[int, int]:
        """Make the index hold exactly ``db_ids``; returns ``(added, removed)``."""
        held = self.ids()
        extra = np.setdiff1d(held, db_ids, assume_unique=True)
        missing = np.setdiff1d(db_ids, held, assume_unique=True)
        if len(extra):
            self.remove(extra)
        if len(missing):
            self.add(*fetch(missing))
        return len(missing), len(extra)

    def add(self, ids: Any, vectors: Any) -> None:
        """Add ``vectors`` under ``ids``: to the index itself, or to the delta when it is read-only."""
        self._mirror = None
        if not self.read_only:
            self.base.add(ids, vectors)
            return
        if self.delta is None:
            self.delta = FaissIndex(self.dim, model_id=self.model_id)
        self.delta.add(ids, vectors)

    def remove(self, ids: Any) -> int:
        """Remove ``ids`` (from the index itself, or as tombstones when it is read-only); returns how many."""
        self._mirror = None
        drop = sorted_distinct(as_ids(ids))
        removed = self.delta.remove(drop) if self.delta is not None else 0
        if not self.read_only:
            return removed + self.base.remove(drop)
        dead = np.intersect1d(self.base.ids(), drop, assume_unique=True)
        fresh = np.setdiff1d(dead, self.tombstones, assume_unique=True)
        self.tombstones = np.union1d(self.tombstones, fresh)
        return removed + len(fresh)

    def merged(self, writable: FaissIndex) -> FaissIndex:
        """``writable`` (this index's file read into memory) with the delta added and tombstones removed."""
        writable.remove(self.tombstones)
        if self.delta is not None:
            writable.add(*self.delta.vectors_view())
        return writable

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: Any,
        k: int,
        allowed_ids: Any = None,
        *,
        nprobe: int | None = None,
        tuning: SearchTuning | None = None,
        sample: ScoreSample | None = None,
    ) -> Result:
        """As :meth:`FaissIndex.search`, over what the database holds now (delta and tombstones
        included); hits of quantized codes rescored with their stored vectors. ``sample`` is filled
        only while the index is its file alone (its rows are then what the database holds)."""
        tuning = tuning or DEFAULT_TUNING
        allowed = None if allowed_ids is None else sorted_distinct(as_ids(allowed_ids))
        if allowed is not None and len(self.tombstones):
            allowed = allowed[~np.isin(allowed, self.tombstones)]
        few = self.full_scan_below if tuning.full_scan_below is None else tuning.full_scan_below
        if self.approximate and allowed is not None and len(allowed) <= few and self.fetch:
            return self._full_scan(queries, k, allowed)
        if self.approximate and allowed is not None and len(allowed):
            share = len(allowed) / max(self.ntotal, 1)  # probe more lists to meet as many allowed vectors
            nprobe = math.ceil((nprobe or self.nprobe) / min(share, 1.0))
        result = self._search_parts(queries, k, allowed, nprobe, tuning, None if self.pending else sample)
        if self.approximate and allowed is not None and self.fetch is not None:
            if (result[1] >= 0).sum(axis=1).min(initial=k) < min(k, len(allowed)):
                return self._full_scan(queries, k, allowed)  # the filter's vectors lie in unprobed lists
        return result if self.exact_scores or self.fetch is None else self._rescored(queries, result)

    def _rescored(self, queries: Any, result: Result) -> Result:
        """``result`` with each hit's exact score (from its stored vector), best first: quantized codes
        rank well but score only roughly. A hit whose vector is gone from the database is dropped."""
        scores, ids = result
        found, vectors = self.fetch(np.unique(ids[ids >= 0])) if self.fetch else (ids[:0], None)
        if vectors is None or not len(found):
            return best_k(np.full(ids.shape, -np.inf, np.float32), np.full(ids.shape, -1), ids.shape[1])
        q = np.asarray(queries, dtype=np.float32).reshape(len(ids), self.dim)
        at = np.searchsorted(found, ids).clip(0, len(found) - 1)
        alive = (ids >= 0) & (found[at] == ids)
        exact = np.einsum("qd,qkd->qk", q, vectors[at])
        return best_k(
            np.where(alive, exact, -np.inf).astype(np.float32), np.where(alive, ids, -1), ids.shape[1]
        )

    def _search_parts(
        self,
        queries: Any,
        k: int,
        allowed: np.ndarray | None,
        nprobe: int | None,
        tuning: SearchTuning,
        sample: ScoreSample | None = None,
    ) -> Result:
        if len(self.tombstones) > _TOMBSTONES_BY_WIDTH and allowed is None:
            allowed = self.ids()  # many removals since the save: a filter of the living ids instead
        widen = len(self.tombstones) if allowed is None else 0
        main = self._search_main(queries, k + widen, allowed, nprobe, tuning, sample)
        if not len(self.tombstones) and self.delta is None:
            return main
        scores, ids = main
        if len(self.tombstones):
            scores = np.where(np.isin(ids, self.tombstones), -np.inf, scores)
        if self.delta is not None:
            more = self.delta.search(queries, k, allowed, tuning=tuning)
            scores, ids = np.hstack([scores, more[0]]), np.hstack([ids, more[1]])
        return best_k(scores, ids, k)

    def _search_main(
        self,
        queries: Any,
        k: int,
        allowed: np.ndarray | None,
        nprobe: int | None,
        tuning: SearchTuning,
        sample: ScoreSample | None,
    ) -> Result:
        mirror = self._device_index()
        if mirror is None or (allowed is not None and not isinstance(mirror, TorchExactIndex)):
            # (faiss-gpu takes no selector: a filtered search of an IVF index runs on the CPU)
            return self.base.search(queries, k, allowed, nprobe=nprobe, tuning=tuning, sample=sample)
        if isinstance(mirror, TorchExactIndex):
            return mirror.search(queries, k, allowed)
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(-1, self.dim))
        params = _faiss.SearchParametersIVF(nprobe=min(int(nprobe or self.nprobe), self.nlist))
        return trim_results(*mirror.search(q, min(k, self.base.ntotal), params=params))

    def _device_index(self) -> Any:
        """The index on the search device (``device``), or None to search with FAISS on the CPU."""
        if self.device is None:
            return None
        if self._mirror is None:
            self._mirror = self._make_mirror()
        return self._mirror if self._mirror is not False else None

    def _make_mirror(self) -> Any:
        if not self.approximate:
            device = self.device or "cpu"
            if device == "auto":
                big = self.base.ntotal >= GPU_MIN_VECTORS
                if not big or not _may_have_cuda() or not cuda_available():
                    return False
                device = "cuda"
            ids, vectors = self.base.vectors_view()
            return TorchExactIndex.from_arrays(ids, vectors, device, copy=device != "cpu")
        if not _faiss_gpu() or split_spec(self.spec)[1]:  # faiss-gpu has no fast-scan IVF
            return False
        try:
            return _gpu_clone(self.base.raw)
        except RuntimeError as exc:  # a kind faiss-gpu cannot hold (an HNSW coarse quantizer, say)
            log.info("searching %s on the CPU: faiss-gpu cannot hold it (%s)", self.spec, exc)
            return False

    def _full_scan(self, queries: Any, k: int, allowed: np.ndarray) -> Result:
        """Exact search over exactly the ``allowed`` vectors, read from the database."""
        assert self.fetch is not None
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(-1, self.dim))
        ids, vectors = self.fetch(allowed)
        if not len(ids):
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, local = faiss.knn(
            q, np.ascontiguousarray(vectors), min(k, len(ids)), faiss.METRIC_INNER_PRODUCT
        )
        return trim_results(scores, np.where(local >= 0, ids[local], -1))


def _may_have_cuda() -> bool:
    """False when there is surely no CUDA GPU, decided without importing torch (which takes seconds)."""
    return "torch" in sys.modules or os.path.exists("/proc/driver/nvidia/version") or sys.platform == "win32"


def _faiss_gpu() -> bool:
    """Whether this FAISS was built with GPU support and sees a GPU (faiss-gpu instead of faiss-cpu)."""
    count: Any = getattr(faiss, "get_num_gpus", None)
    return bool(count is not None and hasattr(faiss, "StandardGpuResources") and count() > 0)


def _gpu_clone(index: Any) -> Any:
    gpu: Any = faiss
    return gpu.index_cpu_to_gpu(gpu.StandardGpuResources(), 0, index)


__all__ = ["GPU_MIN_VECTORS", "Fetch", "LiveIndex"]
