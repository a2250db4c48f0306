"""Plain values the store hands out, and the encodings it uses on disk.

Paths: SQLite text must be valid UTF-8, but POSIX file names are arbitrary bytes. Each path is kept
twice: ``path_key`` (BLOB, unique) holds ``os.fsencode(path)`` exactly, and is what every lookup
uses; ``path`` (TEXT) is a readable form for people and for GLOB filters, equal to the real path
whenever the name is valid UTF-8 (otherwise undecodable bytes appear as ``\\xNN``). Paths leave the
store as ``os.fsdecode(path_key)``: a ``str`` with surrogate escapes that opens the same file.

Vectors: little-endian float32 bytes, ``dim * 4`` long.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from ..errors import IbsearchError, UsageError

PathLike = str | bytes | os.PathLike[str] | os.PathLike[bytes]


class Verified(IntEnum):
    """Who vouches for a stored file's content hash (and so for its vectors), least trusted first."""

    SHARD = 0  # an imported shard's word: never compared with this machine's bytes
    IMPORT = 1  # an import hashed (or compared) the file on this machine; the vectors are the shard's
    INGEST = 2  # a local ingest read the file: only such a file is served, and rows below it are re-read


class VectorError(IbsearchError, ValueError):
    """A vector handed to the store has the wrong shape or holds NaN/Inf; nothing was written."""


def path_key(path: PathLike) -> bytes:
    """The exact bytes of ``path`` as the OS sees it (``os.fsencode``); the lookup key of the files table."""
    return os.fsencode(os.fspath(path))


def key_to_path(key: bytes) -> str:
    """The path as a ``str`` that opens the same file (``os.fsdecode``: surrogate escapes for odd bytes)."""
    return os.fsdecode(bytes(key))


def encode_vectors(vectors: np.ndarray, dim: int, what: str) -> list[bytes]:
    """Validate ``vectors`` (``(n, dim)`` or ``(dim,)``, any float dtype) and return one blob per row.

    Raises :class:`VectorError` for a wrong shape or any NaN/Inf, naming ``what`` (usually the path).
    """
    arr = np.asarray(vectors)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise _wrong_shape(np.shape(vectors), dim, what)
    if not np.issubdtype(arr.dtype, np.floating):
        raise VectorError(f"vectors for {what!r} have dtype {arr.dtype}; expected floating point")
    arr = np.ascontiguousarray(arr, dtype="<f4")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite).tolist()
        raise VectorError(
            f"refusing to store non-finite vectors for {what!r} (rows {bad[:5]} contain NaN or Inf); "
            "the input is probably silent, empty or corrupt"
        )
    return [row.tobytes() for row in arr]


def _wrong_shape(shape: tuple[int, ...], dim: int, what: str) -> VectorError:
    return VectorError(
        f"vectors for {what!r} have shape {tuple(shape)}; this library stores "
        f"(n, {dim}) vectors (was the library built with another model?)"
    )


def _null(_: str) -> None:
    return None


def load_info(text: str) -> Any:
    """A file's stored media info (JSON), with NaN and Infinity read as null: what a library written
    before they were refused may hold, and no JSON output may carry."""
    return json.loads(text, parse_constant=_null)


def encode_entries(entries: Sequence[VectorEntry], dim: int, what: str) -> list[bytes]:
    """The blobs of ``entries``' vectors, validated as by :func:`encode_vectors` (one blob each)."""
    if not entries:
        return []
    for entry in entries:
        if np.shape(entry.vector) != (dim,):
            raise _wrong_shape(np.shape(entry.vector), dim, what)
    return encode_vectors(np.stack([e.vector for e in entries]), dim, what)


def decode_vectors(blobs: list[bytes], dim: int) -> np.ndarray:
    """Turn blobs read back from the ``vectors`` table into a ``(n, dim)`` float32 array."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


@dataclass(frozen=True)
class FileEntry:
    """A file as :meth:`Store.upsert_file` writes it: a row of the files table before it has an id."""

    path: PathLike
    size: int
    mtime_ns: int
    content_hash: str
    modality: str  # the file's (first) modality
    info: Mapping[str, Any] = field(default_factory=dict)  # media info: width, height, duration, ...
    verified: Verified = Verified.INGEST  # who vouches for content_hash: an ingest, unless an import says


@dataclass(frozen=True)
class PassageSpan:
    """Where a text segment (a passage of a long text) lies in its file's text: a row of ``passages``."""

    char_start: int  # offset of its first character in the document's text
    char_end: int  # offset just past its last character
    text: str  # the passage itself: what a hit shows, and what keyword search may read
    page: int | None = None  # the page it begins on (paged documents such as PDF), from 1


@dataclass(frozen=True)
class VectorEntry:
    """A vector to store: a row of the vectors table before it has an id; ``vector`` is ``(dim,)``."""

    vector: np.ndarray
    modality: str  # its index key: a video has picture and sound vectors
    start: float | None = None  # segment start in seconds (None: the whole file)
    end: float | None = None
    preprocess_version: str = ""  # the preprocessing it was computed with
    passage: PassageSpan | None = None  # a text segment's span and text (its start/end are None)


Span = tuple[float | None, float | None]


def vector_entries(
    vectors: np.ndarray,
    modalities: str | Sequence[str],
    spans: Sequence[Span] | None = None,
    preprocess_version: str = "",
) -> list[VectorEntry]:
    """One :class:`VectorEntry` per row of ``vectors`` ``(n, dim)``, for callers that hold arrays:
    ``modalities`` is one for all rows or one per row, ``spans`` ``(start, end)`` seconds per row
    (default: whole-file vectors). Raises :class:`UsageError` when a list's length is not ``n``."""
    rows = np.asarray(vectors)
    rows = rows[None, :] if rows.ndim == 1 else rows
    mods = [modalities] * len(rows) if isinstance(modalities, str) else list(modalities)
    segs = list(spans) if spans is not None else [(None, None)] * len(rows)
    for name, given in (("segments", segs), ("modalities", mods)):
        if len(given) != len(rows):
            raise UsageError(f"{len(given)} {name} given for {len(rows)} vectors")
    return [
        VectorEntry(row, mod, start, end, preprocess_version)
        for row, mod, (start, end) in zip(rows, mods, segs, strict=True)
    ]


@dataclass(frozen=True)
class FileRecord:
    """One row of the files table."""

    id: int
    path: str  # os.fsdecode form: opens the same file, even for non-UTF-8 names
    size: int
    mtime_ns: int
    content_hash: str
    modality: str
    info: dict[str, Any] = field(default_factory=dict)  # media info: width, height, duration, ...
    added: float = 0.0  # unix time of the first insert
    updated: float = 0.0  # unix time of the last change
    verified: Verified = Verified.INGEST  # who vouches for content_hash


@dataclass(frozen=True)
class FileStat:
    """What an incremental walk compares against: size, mtime and content hash of a stored file."""

    size: int
    mtime_ns: int
    content_hash: str
    modality: str = ""  # the file's (first) modality, e.g. to notice a folder re-declared with --as
    verified: Verified = Verified.INGEST  # who vouches for content_hash
    complete: bool = True  # False: a note without passages (stored before they existed), to read again
    dated: bool = True  # False: its info says not when it was taken (stored before dates were read)


@dataclass(frozen=True)
class StoredVector:
    """A stored vector with its provenance; ``vector`` is ``(dim,)`` float32."""

    id: int
    file_id: int
    modality: str
    model_id: str
    preprocess_version: str
    start: float | None  # segment start in seconds (None: the whole file)
    end: float | None
    vector: np.ndarray
    passage: PassageSpan | None = None  # a text segment's span and text


@dataclass(frozen=True)
class VectorRow:
    """What a query result needs about one vector id: its file and the segment it covers."""

    id: int
    file_id: int
    path: str
    modality: str
    info: dict[str, Any]
    start: float | None
    end: float | None
    size: int
    mtime_ns: int
    content_hash: str
    passage: PassageSpan | None = None  # a text segment's span and text


@dataclass(frozen=True)
class Upserted:
    """Outcome of :meth:`Store.upsert_file`: the new vector ids, and the ids it replaced."""

    file_id: int
    vector_ids: list[int]
    removed_ids: list[int]
    created: bool  # True when the path was not in the library before


@dataclass(frozen=True)
class ErrorRecord:
    """A file that could not be ingested, with the reason and the stat it had then."""

    path: str
    reason: str
    time: float
    size: int | None
    mtime_ns: int | None
