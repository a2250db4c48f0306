"""FAISS's fast-scan IVF lists (``PQ...x4fs``): 4-bit codes packed in blocks of 32 rows, interleaved so
that SIMD registers score a block at once.

Two things here deal with the packing. :func:`list_codes` unpacks a list's blocks to one code per row
(what ``encode_vectors`` gives), for ``ibsearch check``. :func:`clear_block_tails` mends what FAISS
1.15's ``remove_ids`` leaves behind: it shrinks a list but keeps the removed rows' bits in the slots of
the last, partly filled block, and a later add ORs new codes into those slots, so vectors added after a
removal got codes that were neither theirs nor anyone's (found by a test that re-encodes every row).
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np


def is_fast_scan(ivf: Any) -> bool:
    """Whether the IVF index ``ivf`` keeps its codes in fast-scan blocks."""
    return isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFastScan)


def list_codes(ivf: Any, i: int) -> np.ndarray:
    """The ``(n, code_size)`` codes of list ``i`` of a fast-scan ``ivf``, one row per vector."""
    ivf = faiss.downcast_index(ivf)
    lists: Any = ivf.invlists
    packer: Any = ivf.get_CodePacker()
    n = lists.list_size(i)
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


__all__ = ["clear_block_tails", "is_fast_scan", "list_codes"]
