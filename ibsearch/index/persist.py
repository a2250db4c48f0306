"""Index files on disk: the FAISS file, its JSON sidecar, and how the two are written and read.

An index file is a derived cache of the database. The sidecar records what the index holds (the id-set
summary the database is compared with), what kind it is and why, and for an approximate index how it
was tuned (the measured recall against exact search and the latency), so ``ibsearch info`` can show it
without loading the index. The two files are replaced one after the other, each atomically; the sidecar
also records the index file's size, so a crash between the two renames leaves a pair that is seen not
to belong together (and the index is brought back from the database) instead of a wrong index. It
records a checksum of the bytes written too (:mod:`.digest`), compared on every load: a flipped bit
anywhere (a centroid, a codebook, a code) makes the file damaged, never a source of wrong results.

Big files are memory-mapped when read for searching: FAISS maps the inverted lists of an IVF index
(``IO_FLAG_MMAP``) and the vectors of a flat one (``IO_FLAG_MMAP_IFC``), so a query reads only the pages
it touches and the page cache is shared between processes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import faiss

from ..files import atomic_write
from ..idsets import IdSetSummary
from .digest import Digest, file_digest

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 3
# Format 1 (before index kinds) lacks the build record, format 2 the checksums: defaults fill them, and
# such files are checked by their sizes and ids (and row by row by ``check``) until they are next saved.
_READABLE_FORMATS = (1, 2, 3)

# faiss's bundled stubs lack the callback I/O classes; those calls go through this untyped alias.
_faiss: Any = faiss


class StaleIndexLoad(Exception):
    """Internal: the file could not be read (the caller turns it into a StaleIndexError)."""


@dataclass(frozen=True)
class Tuning:
    """How an approximate index's search parameter was chosen when it was built."""

    nprobe: int  # inverted lists visited per query
    recall: float  # measured recall@k against exact search, library vectors as queries (self left out)
    k: int  # the k of that recall
    target: float  # the recall the tuner aimed for
    queries: int  # how many library vectors were used as queries
    latency_ms: float  # median single-query search time at ``nprobe`` when it was built
    seconds: float = 0.0  # time the tuning took
    candidates: int = 0  # refined kinds: candidates of k hits ranked by the finer codes (0: 16 per hit)


@dataclass(frozen=True)
class BuildRecord:
    """When and why an index was last built from the database, and what has changed since."""

    built: float | None = None  # unix time of the last full build (None: never, e.g. grown from empty)
    built_count: int = 0  # vectors at that build: what growth and changes are measured against
    changed: int = 0  # vectors added or removed since that build
    build_seconds: float | None = None  # how long the build (training, adding, tuning) took
    reason: str = ""  # why this kind of index, in words
    tuning: Tuning | None = None  # approximate indexes only
    declined: str = ""  # an approximate spec that was tried and not kept (too few vectors, or no faster)

    def changed_by(self, n: int) -> BuildRecord:
        """The same record with ``n`` more vectors added or removed."""
        return replace(self, changed=self.changed + n)


@dataclass(frozen=True)
class IndexMeta:
    """The JSON sidecar saved next to an index file."""

    format: int
    spec: str  # "Flat" (exact) or the FAISS factory string of an approximate index
    dim: int
    model_id: str | None
    count: int
    max_id: int
    checksum: int
    saved: float  # unix time
    record: BuildRecord = field(default_factory=BuildRecord)
    file_bytes: int | None = None  # size of the index file written with this sidecar
    refine_bytes: int | None = None  # size of the refine codes' file written with it (refined kinds)
    file_digest: str | None = None  # checksum of the index file's bytes (digest.file_digest)
    refine_digest: str | None = None  # checksum of the refine codes' file

    @property
    def summary(self) -> IdSetSummary:
        """The id-set summary recorded at save time (compare with ``Store.id_summary``)."""
        return IdSetSummary(self.count, self.max_id, self.checksum)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> IndexMeta:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        record = dict(data.pop("record", None) or {})
        tuning = record.pop("tuning", None)
        return cls(
            **{k: v for k, v in data.items() if k in known},
            record=BuildRecord(**record, tuning=Tuning(**tuning) if tuning else None),
        )


def sidecar_path(path: str | os.PathLike[str]) -> str:
    """Where the sidecar of the index file ``path`` lives: ``<path>.json``."""
    return os.fspath(path) + ".json"


def read_meta(path: str | os.PathLike[str]) -> IndexMeta | None:
    """The sidecar of ``path`` without loading the index; None when missing or unreadable."""
    try:
        with open(sidecar_path(path), "rb") as fh:
            meta = IndexMeta.from_json(fh.read())
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return meta if meta.format in _READABLE_FORMATS else None


def refine_path(path: str | os.PathLike[str]) -> str:
    """Where the refine codes of the index file ``path`` live (refined kinds): ``<path>.refine``."""
    return os.fspath(path) + ".refine"


def write_pair(path: str | os.PathLike[str], index: Any, meta: IndexMeta, refine: Any = None) -> IndexMeta:
    """Write the FAISS ``index`` to ``path``, its ``refine`` codes (a FAISS index, or None) beside it,
    and then ``meta`` (with the files' sizes and checksums) to its sidecar. A refine file of an earlier
    kind that had one is deleted after the sidecar no longer names it."""
    target = os.fspath(path)
    written = write_digested(target, lambda write: _write_faiss(index, write))
    refined = None
    if refine is not None:
        refined = write_digested(refine_path(target), lambda write: _write_faiss(refine, write))
    return finish_pair(target, meta, written, refined)


def finish_pair(
    target: str, meta: IndexMeta, written: tuple[int, str], refine: tuple[int, str] | None
) -> IndexMeta:
    """Write ``meta`` to the sidecar of the index file ``target`` just written (``written``: its size
    and checksum; ``refine``: those of its refine file, or None, which deletes one left by an earlier
    kind once the sidecar no longer names it); returns the sidecar written."""
    meta = replace(meta, file_bytes=written[0], file_digest=written[1])
    meta = replace(
        meta, refine_bytes=refine[0] if refine else None, refine_digest=refine[1] if refine else None
    )
    atomic_write(sidecar_path(target), lambda fh: fh.write(meta.to_json()))
    if refine is None and os.path.exists(refine_path(target)):
        os.unlink(refine_path(target))
    return meta


#: Takes bytes to append to a file being written (a ``bytes``-like object; returns what it took).
Write = Callable[[Any], int]


def write_digested(target: str, produce: Callable[[Write], None]) -> tuple[int, str]:
    """Write ``target`` atomically with the bytes ``produce(write)`` hands to ``write``, in order;
    returns their size and checksum (:mod:`.digest`), computed as they go by."""
    digest = Digest()

    def fill(fh: Any) -> None:
        def write(data: Any) -> int:
            digest.update(data)
            return int(fh.write(data))

        produce(write)

    atomic_write(target, fill)
    return digest.size, digest.hexdigest()


def _write_faiss(index: Any, write: Write) -> None:
    writer = _faiss.PyCallbackIOWriter(write)
    faiss.write_index(index, writer)
    del writer


def read_index(path: str, meta: IndexMeta, *, mmap: bool) -> Any:
    """The FAISS index in ``path`` (memory-mapped and read-only with ``mmap``).

    Raises :class:`StaleIndexLoad` when the file is unreadable (see :func:`same_file` for whether it is
    the one ``meta`` was written with).
    """
    try:
        if mmap:
            flag = faiss.IO_FLAG_MMAP_IFC if meta.spec == "Flat" else faiss.IO_FLAG_MMAP
            return faiss.read_index(path, flag | faiss.IO_FLAG_READ_ONLY)
        with open(path, "rb") as fh:
            reader = _faiss.PyCallbackIOReader(fh.read)
            index = faiss.read_index(reader)
            del reader
            return index
    except (OSError, RuntimeError, UnicodeError) as exc:
        log.debug("FAISS cannot read %s: %s", path, exc)  # C++ detail, not for users
        raise StaleIndexLoad("unreadable") from None


def same_file(path: str, meta: IndexMeta) -> bool:
    """Whether ``path`` (and its refine file, when ``meta`` names one) has the size recorded in ``meta``
    (True for sidecars that recorded none)."""
    refined = meta.refine_bytes is None or _size(refine_path(path)) == meta.refine_bytes
    return refined and (meta.file_bytes is None or _size(path) == meta.file_bytes)


def damaged_file(path: str, meta: IndexMeta) -> str | None:
    """The file of the pair (``path`` or its refine file) whose bytes differ from the checksum ``meta``
    recorded, or None (also for sidecars that recorded none)."""
    for target, expected in ((path, meta.file_digest), (refine_path(path), meta.refine_digest)):
        if expected is not None:
            try:
                if file_digest(target) != expected:
                    return target
            except OSError:
                return target
    return None


def stamp(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """What identifies the sidecar of ``path`` as written (device, inode, times, size; None when there
    is none): it is written last, atomically, so a new stamp means a new pair of files."""
    try:
        st = os.stat(sidecar_path(path))
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


__all__ = [
    "SIDECAR_FORMAT",
    "BuildRecord",
    "IndexMeta",
    "Tuning",
    "damaged_file",
    "finish_pair",
    "read_index",
    "read_meta",
    "refine_path",
    "same_file",
    "sidecar_path",
    "stamp",
    "write_digested",
    "write_pair",
]
