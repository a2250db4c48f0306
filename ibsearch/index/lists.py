"""The inverted lists of an IVF index: their ids, their codes row by row, and adding to them.

FAISS's fast-scan IVF kinds (``PQ...x4fs``) pack 4-bit codes in blocks of 32 rows, interleaved so that
SIMD registers score a block at once. :func:`list_codes` unpacks a list to one code per row (what
``encode_vectors`` gives) for ``ibsearch check``. :func:`clear_block_tails` mends what FAISS 1.15's
``remove_ids`` leaves behind in them: it shrinks a list but keeps the removed rows' bits in the slots of
the last, partly filled block, and a later add ORs new codes into those slots, so vectors added after a
removal got codes that were neither theirs nor anyone's (found by a test that re-encodes every row).

:func:`add_by_nearest_centroid` adds vectors to the list of their exact nearest centroid, whatever the
coarse quantizer: a graph (HNSW) one finds a vector's list approximately and one vector at a time, while
BLAS over the centroids is both exact and several times faster. FAISS's ``add_core`` with the lists given
would do it, but corrupts a fast-scan index's packed lists, so the quantizer is swapped for a flat one
holding the same centroids while adding.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np


def is_fast_scan(ivf: Any) -> bool:
    """Whether the IVF index ``ivf`` keeps its codes in fast-scan blocks."""
    return isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFastScan)


def graph_quantizer(ivf: Any) -> Any:
    """The HNSW coarse quantizer of ``ivf`` (``IVF4096_HNSW32,...``), or None."""
    quantizer = faiss.downcast_index(ivf.quantizer)
    return quantizer if isinstance(quantizer, faiss.IndexHNSW) else None


def add_by_nearest_centroid(ivf: Any, centroids: np.ndarray, vectors: np.ndarray, ids: np.ndarray) -> None:
    """Add ``vectors`` under ``ids`` to ``ivf``, each to the list of its nearest of ``centroids`` (the
    quantizer's own, ``(nlist, dim)``)."""
    graph = ivf.quantizer
    flat = faiss.IndexFlatIP(ivf.d)
    flat.add(np.ascontiguousarray(centroids, dtype=np.float32))
    ivf.quantizer = flat
    try:
        ivf.add_with_ids(vectors, ids)
    finally:
        ivf.quantizer = graph


def coarse_lists(ivf: Any, queries: np.ndarray, nprobe: int, graph: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(centroid scores, list numbers)`` ``(nq, nprobe)`` of the lists nearest each query (``graph``:
    the search parameters of a graph quantizer, or None)."""
    scores, lists = ivf.quantizer.search(queries, nprobe, params=graph)
    return np.ascontiguousarray(scores, dtype=np.float32), np.ascontiguousarray(lists, dtype=np.int64)


def search_lists(
    ivf: Any, queries: np.ndarray, k: int, coarse: tuple[np.ndarray, np.ndarray], sel: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` ``(nq, k)`` of the best ``k`` in the lists ``coarse`` (:func:`coarse_lists`)
    gives each query, admitting only what ``sel`` (an ``IDSelector``, or None) admits. Two indexes over
    the same centroids take one coarse search between them (FAISS's ``search_preassigned``)."""
    centroid_scores, lists = coarse
    n = len(queries)
    params: Any = faiss.SearchParametersIVF()
    params.nprobe, params.sel = lists.shape[1], sel
    scores, ids = np.empty((n, k), dtype=np.float32), np.empty((n, k), dtype=np.int64)
    ivf.search_preassigned_c(n, faiss.swig_ptr(queries), k, faiss.swig_ptr(lists),
                             faiss.swig_ptr(centroid_scores), faiss.swig_ptr(scores), faiss.swig_ptr(ids),
                             False, params)  # fmt: skip
    return scores, ids


def list_ids(ivf: Any) -> np.ndarray:
    """Every id held by ``ivf``, list after list, as int64."""
    lists: Any = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
        for i in range(ivf.nlist)
        if lists.list_size(i)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def list_codes(ivf: Any, i: int) -> np.ndarray:
    """The ``(n, code_size)`` codes of list ``i`` of ``ivf``, one row per vector (unpacked)."""
    ivf = faiss.downcast_index(ivf)
    lists: Any = ivf.invlists
    n = lists.list_size(i)
    if not is_fast_scan(ivf):
        return faiss.rev_swig_ptr(lists.get_codes(i), n * ivf.code_size).reshape(n, -1).copy()
    packer: Any = ivf.get_CodePacker()
    blocks = -(-n // packer.nvec)
    packed = faiss.rev_swig_ptr(lists.get_codes(i), blocks * packer.block_size)
    out = np.empty((blocks * packer.nvec, packer.code_size), dtype=np.uint8)
    for b in range(blocks):
        block, rows = packed[b * packer.block_size :], out[b * packer.nvec :]
        packer.unpack_all(faiss.swig_ptr(block), faiss.swig_ptr(rows))
    return out[:n].copy()


def clear_block_tails(ivf: Any) -> None:
    """Zero the unused slots of every list's last block of a fast-scan ``ivf`` (after a removal)."""
    ivf = faiss.downcast_index(ivf)
    lists: Any = ivf.invlists
    packer: Any = ivf.get_CodePacker()
    rows = np.empty((packer.nvec, packer.code_size), dtype=np.uint8)
    for i in range(ivf.nlist):
        n = lists.list_size(i)
        used = n % packer.nvec
        if not used:
            continue
        start = (n // packer.nvec) * packer.block_size
        last = faiss.rev_swig_ptr(lists.get_codes(i), start + packer.block_size)[start:]
        packer.unpack_all(faiss.swig_ptr(last), faiss.swig_ptr(rows))
        rows[used:] = 0
        last[:] = 0  # packing ORs bits into place
        packer.pack_all(faiss.swig_ptr(rows), faiss.swig_ptr(last))


__all__ = [
    "add_by_nearest_centroid",
    "clear_block_tails",
    "coarse_lists",
    "graph_quantizer",
    "is_fast_scan",
    "list_codes",
    "list_ids",
    "search_lists",
]
