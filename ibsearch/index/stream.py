"""An exact index file written from chunks of stored vectors, never holding all of them.

A writer that builds the exact index of a million vectors in memory only to save it holds every vector
twice over (4 GB at 1024-d, plus FAISS's growing arrays). FAISS writes an exact index
(``IndexIDMap2`` around ``IndexFlatIP``) as two index headers, the vectors in the order they were added,
and then their ids, so the same bytes can be written a chunk at a time as the database hands them out:
the ids, which come last, wait in an unnamed temporary file beside the index. The file is FAISS's own
(byte for byte what ``faiss.write_index`` writes, which a test compares), so it is read, memory-mapped
and checked like any other, and its sidecar checksum is computed on the bytes as they are written.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterable

import numpy as np

from ..errors import LibraryError
from ..idsets import CHECK_A, CHECK_P, from_sums
from .faiss_index import EXACT
from .persist import SIDECAR_FORMAT, BuildRecord, IndexMeta, Write, finish_pair, write_digested

# FAISS's index header (index_write.cpp, write_index_header): d (int), ntotal (idx_t), two unused idx_t
# it sets to 1 << 20, is_trained (bool), metric (int; inner product is 0); native byte order, packed.
_HEADER = struct.Struct("=iqqq?i")
_UNUSED = 1 << 20
_INNER_PRODUCT = 0
_SIZE = struct.Struct("=Q")  # a std::vector's length as FAISS writes it (size_t)
_COPY = 1 << 20  # bytes per copy of the ids into the index file


def write_exact(
    path: str | os.PathLike[str],
    dim: int,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    count: int,
    *,
    model_id: str | None,
    record: Callable[[], BuildRecord],
) -> IndexMeta:
    """Write the exact index of the ``count`` vectors in ``chunks`` (``(ids (n,), vectors (n, dim))``,
    as ``store.vectors.chunks`` gives them) to ``path`` and its sidecar, each atomically, holding one chunk
    at a time; ``record()``, asked once every vector is written, is the sidecar's build record. Returns
    the sidecar. Raises :class:`LibraryError` when the chunks hold another count or width (the file is
    then left as it was)."""
    target = os.fspath(path)
    sums = [0, -1, 0, 0]  # count, max id, sum of ids, sum of their mix (idsets.from_sums)

    def produce(write: Write) -> None:
        header = _HEADER.pack(dim, count, _UNUSED, _UNUSED, True, _INNER_PRODUCT)
        write(b"IxM2" + header + b"IxFI" + header + _SIZE.pack(count * dim))
        with tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(target))) as spill:
            for ids, vectors in chunks:
                ids = np.ascontiguousarray(ids, dtype="=i8")
                vectors = np.ascontiguousarray(vectors, dtype="=f4")
                if vectors.shape != (len(ids), dim) or sums[0] + len(ids) > count:
                    raise _changed(target, count, dim)
                if len(ids):  # an empty view cannot be cast to bytes
                    write(vectors.data.cast("B"))
                    spill.write(ids.data.cast("B"))
                    _take(sums, ids)
            if sums[0] != count:
                raise _changed(target, count, dim)
            write(_SIZE.pack(count))
            spill.seek(0)
            while block := spill.read(_COPY):
                write(block)

    written = write_digested(target, produce)
    held = from_sums(*sums)
    meta = IndexMeta(SIDECAR_FORMAT, EXACT, dim, model_id, *held, saved=time.time(), record=record())
    return finish_pair(target, meta, written, None)


def _take(sums: list[int], ids: np.ndarray) -> None:
    """Add a chunk of ``ids`` to the running ``[count, max, sum, mix]`` of :func:`idsets.from_sums`."""
    sums[0] += len(ids)
    sums[1] = max(sums[1], int(ids.max()))
    sums[2] += int(ids.sum(dtype=np.int64))
    sums[3] += int((((ids % CHECK_P) * CHECK_A) % CHECK_P).sum(dtype=np.int64))


def _changed(target: str, count: int, dim: int) -> LibraryError:
    return LibraryError(
        f"cannot write index file {target!r}: the vectors read were not the {count:,} of width {dim} the "
        "database held when the build began (it changed meanwhile?); run 'ibsearch reindex'"
    )


__all__ = ["write_exact"]
