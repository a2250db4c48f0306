"""Checksums of index files: a CRC-32 of each 8 MiB chunk, the chunks' CRCs hashed with BLAKE2b.

Every byte of an index file decides results (coarse centroids, the graph over them, codebooks, codes,
ids), and a flipped bit in most of them leaves a file that still loads and still holds the right ids.
So the sidecar records a checksum of the bytes as they were written, and every load compares.

The cost is paid on every open, and a file of a million vectors is over a gigabyte (4 GB exact). The
threat is damage (a disk, a copy, a stray write), not forgery, so each chunk gets a CRC-32 (zlib's,
several times faster than a cryptographic hash; it finds every burst of up to 32 flipped bits and
misses other damage to a chunk with odds of 1 in 4 billion), and the chunks are independent, so
:func:`file_digest` checks them on all cores at once (zlib and ``os.pread`` release the GIL), reading
through a small buffer per chunk rather than mapping the file, so the pages never count against the
process. :class:`Digest` computes the same value while the file is being written.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor

CHUNK = 8 << 20  # bytes per leaf: big enough that threads are worth it, small enough to balance them
_SIZE = 16  # bytes of the digest over the chunks' CRCs (BLAKE2b-128)


def _leaf(data: bytes | bytearray | memoryview) -> bytes:
    return zlib.crc32(data).to_bytes(4, "little")


def _root(size: int, leaves: list[bytes]) -> str:
    root = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=_SIZE)
    for leaf in leaves:
        root.update(leaf)
    return root.hexdigest()


class Digest:
    """The digest of a file, fed its bytes in order as they are written (:meth:`update`)."""

    def __init__(self) -> None:
        self.size = 0
        self._leaves: list[bytes] = []
        self._chunk = bytearray()

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            take = min(len(view), CHUNK - len(self._chunk))
            self._chunk += view[:take]
            self.size += take
            view = view[take:]
            if len(self._chunk) == CHUNK:
                self._leaves.append(_leaf(self._chunk))
                self._chunk.clear()

    def hexdigest(self) -> str:
        """The digest of everything fed so far (as :func:`file_digest` of those bytes gives it)."""
        tail = [_leaf(self._chunk)] if self._chunk else []
        return _root(self.size, self._leaves + tail)


def file_digest(path: str | os.PathLike[str], threads: int | None = None) -> str:
    """The digest of the file at ``path``, its chunks hashed on ``threads`` threads (default: one per
    core). Raises ``OSError`` when it cannot be read."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        offsets = range(0, size, CHUNK)
        workers = max(1, min(threads or os.cpu_count() or 1, len(offsets)))

        def leaf(offset: int) -> bytes:
            data = os.pread(fd, CHUNK, offset)
            if len(data) != min(CHUNK, size - offset):
                raise OSError(f"{os.fspath(path)!r} changed size while it was read")
            return _leaf(data)

        with ThreadPoolExecutor(workers) as pool:
            leaves = list(pool.map(leaf, offsets))
    finally:
        os.close(fd)
    return _root(size, leaves)


__all__ = ["CHUNK", "Digest", "file_digest"]
