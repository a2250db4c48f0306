"""Exact search as a torch matmul + top-k, for GPUs (and testable on CPU).

FAISS on the GPU needs a faiss-gpu build that cannot sit next to faiss-cpu; torch with CUDA is what a
GPU user already has. The vectors live on the device as one ``(n, dim)`` float32 tensor; a search
multiplies the queries with blocks of it and merges per-block top-k, so memory stays bounded for
large batches. Filters become a boolean mask over the rows, applied before the top-k.

torch is imported when an index is created, never at package import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..devices import resolve_device
from ..errors import UsageError
from ..idsets import IdSetSummary, summarize_ids
from .faiss_index import EXACT, FaissIndex
from .results import trim_results
from .selector import as_ids

_BLOCK_BYTES = 256 << 20  # score-matrix memory per block


def _torch() -> Any:
    import torch

    return torch


class TorchExactIndex:
    """Exact inner-product search over vectors held on a torch device (same results as ``Flat``)."""

    def __init__(self, dim: int, device: str = "auto") -> None:
        torch = _torch()
        self.dim = int(dim)
        self.device = torch.device(resolve_device(device))
        self._ids = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._vecs = torch.zeros((0, self.dim), dtype=torch.float32, device=self.device)

    @classmethod
    def from_arrays(
        cls, ids: Any, vectors: np.ndarray, device: str = "auto", *, copy: bool = True
    ) -> TorchExactIndex:
        """An index over ``vectors`` ``(n, dim)`` float32 with ``ids`` ``(n,)``.

        On the CPU with ``copy=False`` the tensor shares the array's memory (the caller keeps the array
        alive and unchanged), so a FAISS index and this one can search the same vectors.
        """
        torch = _torch()
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim != 2:
            raise UsageError(f"vectors must be (n, dim), got shape {arr.shape}")
        self = cls(arr.shape[1], device)
        id_arr = as_ids(ids)
        if len(id_arr) != len(arr):
            raise UsageError(f"{len(id_arr)} ids given for {len(arr)} vectors")
        vecs = torch.from_numpy(arr if arr.flags.c_contiguous else np.ascontiguousarray(arr))
        self._vecs = vecs.to(self.device, copy=copy)
        self._ids = torch.from_numpy(id_arr.copy()).to(self.device)
        return self

    @classmethod
    def from_faiss(cls, index: FaissIndex, device: str = "auto") -> TorchExactIndex:
        """A copy of an exact :class:`FaissIndex` on ``device``."""
        if index.spec != EXACT:
            raise UsageError("only an exact ('Flat') index can be mirrored for torch search")
        ids, vectors = index.vectors_view()
        return cls.from_arrays(ids, vectors, device, copy=True)

    @property
    def ntotal(self) -> int:
        """Number of vectors held."""
        return int(self._ids.shape[0])

    def ids(self) -> np.ndarray:
        """All ids held (int64, insertion order)."""
        return self._ids.cpu().numpy()

    def summary(self) -> IdSetSummary:
        """Count, max id and checksum of the ids held."""
        return summarize_ids(self.ids())

    def add(self, ids: Any, vectors: Any) -> None:
        """Append ``vectors`` ``(n, dim)`` under ``ids`` ``(n,)``."""
        torch = _torch()
        arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim))
        id_arr = as_ids(ids)
        if len(id_arr) != len(arr):
            raise UsageError(f"{len(id_arr)} ids given for {len(arr)} vectors")
        self._vecs = torch.cat([self._vecs, torch.from_numpy(arr).to(self.device)])
        self._ids = torch.cat([self._ids, torch.from_numpy(id_arr).to(self.device)])

    def remove(self, ids: Any) -> int:
        """Remove ``ids`` (absent ones ignored); returns how many were removed."""
        torch = _torch()
        drop = torch.isin(self._ids, torch.from_numpy(as_ids(ids)).to(self.device))
        n = int(drop.sum())
        if n:
            keep = ~drop
            self._ids, self._vecs = self._ids[keep], self._vecs[keep]
        return n

    def search(self, queries: Any, k: int, allowed_ids: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Same contract as :meth:`FaissIndex.search`: ``(scores (nq, k'), ids (nq, k'))``, best first."""
        torch = _torch()
        q_np = np.asarray(queries, dtype=np.float32)
        if q_np.ndim == 1:
            q_np = q_np[None, :]
        if q_np.ndim != 2 or q_np.shape[1] != self.dim:
            raise UsageError(f"queries have shape {q_np.shape}; this index holds (n, {self.dim}) vectors")
        if k < 1:
            raise UsageError(f"k must be at least 1, got {k}")
        nq, n = len(q_np), self.ntotal
        mask = None
        if allowed_ids is not None:
            mask = torch.isin(self._ids, torch.from_numpy(as_ids(allowed_ids)).to(self.device))
        candidates = n if mask is None else int(mask.sum())
        kk = min(int(k), candidates)
        if kk == 0 or nq == 0:
            return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)
        with torch.inference_mode():
            q = torch.from_numpy(np.ascontiguousarray(q_np)).to(self.device)
            best_s = torch.full((nq, 0), float("-inf"), device=self.device)
            best_p = torch.zeros((nq, 0), dtype=torch.int64, device=self.device)
            block = max(1024, _BLOCK_BYTES // (4 * nq))
            for start in range(0, n, block):
                scores = q @ self._vecs[start : start + block].T  # (nq, rows in block)
                if mask is not None:
                    scores.masked_fill_(~mask[start : start + block], float("-inf"))
                top_s, top_p = scores.topk(min(kk, scores.shape[1]), dim=1)
                merged_s = torch.cat([best_s, top_s], dim=1)
                merged_p = torch.cat([best_p, top_p + start], dim=1)
                best_s, order = merged_s.topk(min(kk, merged_s.shape[1]), dim=1)
                best_p = merged_p.gather(1, order)
            ids = self._ids[best_p]
            ids = torch.where(torch.isfinite(best_s), ids, torch.full_like(ids, -1))
            return trim_results(best_s.cpu().numpy().astype(np.float32), ids.cpu().numpy())
