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
from typing import Any

import faiss
import numpy as np

from ..devices import cuda_available
from .faiss_index import FaissIndex
from .policy import DEFAULT_FULL_SCAN_BELOW
from .results import Result, best_k, trim_results
from .selector import as_ids, sorted_distinct
from .torch_index import TorchExactIndex

log = logging.getLogger(__name__)

#: Reads stored vectors by id: ``fetch(ids) -> (ids found, vectors (n, dim))`` (``Store.vectors_by_id``).
Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
#: Exact indexes this big are searched on a GPU when the device is "auto" and one is there.
GPU_MIN_VECTORS = 50_000
_EMPTY = np.zeros(0, dtype=np.int64)
_TOMBSTONES_BY_WIDTH = 1024  # up to this many, ask for that many more hits and drop the tombstones


class LiveIndex(FaissIndex):
    """A :class:`FaissIndex` that follows the database: delta, tombstones, exact small filters, GPU."""

    delta: FaissIndex | None = None  # vectors the index itself does not hold (exact, in memory)
    tombstones: np.ndarray = _EMPTY  # sorted ids the index holds that were removed since
    fetch: Fetch | None = None  # stored vectors by id, for exact searches over a filter's vectors
    full_scan_below: int = DEFAULT_FULL_SCAN_BELOW
    device: str | None = None  # None: FAISS on the CPU; "auto"/"cuda"/"cpu": torch (or faiss-gpu)
    _mirror: Any = None  # the index on the search device, made on first use

    @classmethod
    def adopt(cls, index: FaissIndex) -> LiveIndex:
        """``index`` itself (its FAISS index, not a copy) as a :class:`LiveIndex`."""
        live = cls.__new__(cls)
        live.__dict__.update(index.__dict__)
        return live

    # ------------------------------------------------------------------ contents

    @property
    def ntotal(self) -> int:
        held = int(self._index.ntotal) - len(self.tombstones)
        return held + (self.delta.ntotal if self.delta is not None else 0)

    def ids(self) -> np.ndarray:
        held = self._held_ids()
        if len(self.tombstones):
            held = held[~np.isin(held, self.tombstones)]
        return held if self.delta is None else np.concatenate([held, self.delta.ids()])

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
        self._mirror = None
        if not self.read_only:
            super().add(ids, vectors)
            return
        if self.delta is None:
            self.delta = FaissIndex(self.dim, model_id=self.model_id)
        self.delta.add(ids, vectors)

    def remove(self, ids: Any) -> int:
        self._mirror = None
        drop = sorted_distinct(as_ids(ids))
        removed = self.delta.remove(drop) if self.delta is not None else 0
        if not self.read_only:
            return removed + super().remove(drop)
        dead = np.intersect1d(self._held_ids(), drop, assume_unique=True)
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
        self, queries: Any, k: int, allowed_ids: Any = None, *, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        allowed = None if allowed_ids is None else sorted_distinct(as_ids(allowed_ids))
        if allowed is not None and len(self.tombstones):
            allowed = allowed[~np.isin(allowed, self.tombstones)]
        if self.approximate and allowed is not None and len(allowed) <= self.full_scan_below and self.fetch:
            return self._full_scan(queries, k, allowed)
        if self.approximate and allowed is not None and len(allowed):
            share = len(allowed) / max(self.ntotal, 1)  # probe more lists to meet as many allowed vectors
            nprobe = math.ceil((nprobe or self.nprobe) / min(share, 1.0))
        result = self._search_parts(queries, k, allowed, nprobe)
        if self.approximate and allowed is not None and self.fetch is not None:
            if (result[1] >= 0).sum(axis=1).min(initial=k) < min(k, len(allowed)):
                return self._full_scan(queries, k, allowed)  # the filter's vectors lie in unprobed lists
        return result if self.exact_scores or self.fetch is None else self._rescored(queries, result)

    @property
    def exact_scores(self) -> bool:
        """Whether the index scores with the vectors themselves (exact, or IVF with flat codes)."""
        return not self.approximate or isinstance(faiss.downcast_index(self._ivf()), faiss.IndexIVFFlat)

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

    def _search_parts(self, queries: Any, k: int, allowed: np.ndarray | None, nprobe: int | None) -> Result:
        if len(self.tombstones) > _TOMBSTONES_BY_WIDTH and allowed is None:
            allowed = self.ids()  # many removals since the save: a filter of the living ids instead
        widen = len(self.tombstones) if allowed is None else 0
        main = self._search_main(queries, k + widen, allowed, nprobe)
        if not len(self.tombstones) and self.delta is None:
            return main
        scores, ids = main
        if len(self.tombstones):
            scores = np.where(np.isin(ids, self.tombstones), -np.inf, scores)
        if self.delta is not None:
            more = self.delta.search(queries, k, allowed)
            scores, ids = np.hstack([scores, more[0]]), np.hstack([ids, more[1]])
        return best_k(scores, ids, k)

    def _search_main(self, queries: Any, k: int, allowed: np.ndarray | None, nprobe: int | None) -> Result:
        mirror = self._device_index()
        if mirror is None:
            return super().search(queries, k, allowed, nprobe=nprobe)
        if isinstance(mirror, TorchExactIndex):
            return mirror.search(queries, k, allowed)
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(-1, self.dim))
        mirror.nprobe = min(int(nprobe or self.nprobe), self.nlist)
        if allowed is not None:  # faiss-gpu takes no selector: filter a wider result on the CPU
            return super().search(queries, k, allowed, nprobe=nprobe)
        return trim_results(*mirror.search(q, min(k, int(self._index.ntotal))))

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
                big = self._index.ntotal >= GPU_MIN_VECTORS
                if not big or not _may_have_cuda() or not cuda_available():
                    return False
                device = "cuda"
            ids, vectors = self.vectors_view()
            return TorchExactIndex.from_arrays(ids, vectors, device, copy=device != "cpu")
        if not _faiss_gpu() or self._refine is not None:  # faiss-gpu has no fast-scan IVF
            return False
        try:
            return _gpu_clone(self._index)
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
