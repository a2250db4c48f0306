"""The ``files`` and ``errors`` tables: which paths the library holds, with what content, and which failed.

Paths are stored as their exact bytes (see :mod:`ibsearch.store.records`); a file's vectors are
written and deleted together with its row, in one transaction.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import LibraryError, UsageError
from ..files import display_path
from .connection import guard_methods
from .database import Database
from .records import (
    ErrorRecord,
    FileRecord,
    FileStat,
    PathLike,
    Upserted,
    Verified,
    encode_vectors,
    key_to_path,
    load_info,
    path_key,
)

FILE_COLS = "id, path_key, size, mtime_ns, hash, modality, info, added, updated, verified"
FILE_COLS_F = ", ".join("f." + c.strip() for c in FILE_COLS.split(","))
INFO_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def file_record(row: Sequence[Any]) -> FileRecord:
    """A :class:`FileRecord` from a row selected with :data:`FILE_COLS`."""
    fid, key, size, mtime_ns, content_hash, modality, info, added, updated, verified = row
    return FileRecord(fid, key_to_path(key), size, mtime_ns, content_hash, modality, load_info(info), added,
                      updated, Verified(verified))  # fmt: skip


def prefix_clause(column: str, prefix: PathLike) -> tuple[str, list[bytes]]:
    """SQL matching ``column`` (path keys) equal to ``prefix`` or inside it as a directory.

    Uses a BLOB range rather than LIKE, so it is exact for any bytes and can use the unique index.
    """
    key = path_key(prefix)
    sep = os.fsencode(os.sep)
    if not key:
        return "1", []
    lo = key if key.endswith(sep) else key + sep
    hi = lo[:-1] + bytes([lo[-1] + 1])  # the first key after every key starting with `lo`
    if key.endswith(sep):
        return f"({column} >= ? AND {column} < ?)", [lo, hi]
    return f"({column} = ? OR ({column} >= ? AND {column} < ?))", [key, lo, hi]


class FileTables(Database):
    """Reads and writes of the ``files`` and ``errors`` tables (a layer of :class:`~ibsearch.store.Store`)."""

    # ------------------------------------------------------------------ files: reads

    def get_file(self, path: PathLike) -> FileRecord | None:
        """The stored record of ``path``, or None."""
        row = self._conn.execute(f"SELECT {FILE_COLS} FROM files WHERE path_key = ?", (path_key(path),))
        found = row.fetchone()
        return None if found is None else file_record(found)

    def get_file_by_id(self, file_id: int) -> FileRecord | None:
        """The stored record with this ``files.id`` (a library's stable item id), or None."""
        row = self._conn.execute(f"SELECT {FILE_COLS} FROM files WHERE id = ?", (int(file_id),))
        found = row.fetchone()
        return None if found is None else file_record(found)

    def file_ids_among(self, file_ids: Iterable[int]) -> set[int]:
        """Those of ``file_ids`` that are files of the library now (a look-up each)."""
        wanted = json.dumps([int(i) for i in file_ids])
        rows = self._conn.execute(
            "SELECT id FROM files WHERE id IN (SELECT value FROM json_each(?))", (wanted,)
        )
        return {int(r[0]) for r in rows}

    def files_under(self, prefix: PathLike) -> dict[str, FileStat]:
        """Every stored path equal to ``prefix`` or inside it as a directory, with size, mtime and hash.

        An empty ``prefix`` means the whole library. Paths are ``os.fsdecode`` strings.
        """
        clause, params = prefix_clause("path_key", prefix)
        rows = self._conn.execute(
            f"SELECT path_key, size, mtime_ns, hash, modality, verified FROM files WHERE {clause}", params
        )
        return {key_to_path(r[0]): FileStat(r[1], r[2], r[3], r[4], Verified(r[5])) for r in rows}

    def paths_under(self, prefix: PathLike) -> list[str]:
        """The stored paths under ``prefix`` (see :meth:`files_under`), sorted by their bytes."""
        clause, params = prefix_clause("path_key", prefix)
        rows = self._conn.execute(f"SELECT path_key FROM files WHERE {clause} ORDER BY path_key", params)
        return [key_to_path(r[0]) for r in rows]

    def count_files_with_info(self, key: str, value: Any) -> int:
        """Number of files whose media info has ``key`` equal to ``value`` (e.g. ``has_audio`` False)."""
        if not INFO_KEY.match(key):
            raise UsageError(f"invalid media info key {key!r}")
        row = self._conn.execute(
            "SELECT count(*) FROM files WHERE json_extract(info, ?) = json_extract(?, '$')",
            (f"$.{key}", json.dumps(value)),
        ).fetchone()
        return int(row[0])

    def file_count(self) -> int:
        """Number of files in the library."""
        return int(self._conn.execute("SELECT count(*) FROM files").fetchone()[0])

    # ------------------------------------------------------------------ files and vectors: writes

    def upsert_file(
        self,
        path: PathLike,
        *,
        size: int,
        mtime_ns: int,
        content_hash: str,
        modality: str,
        vectors: np.ndarray,
        info: Mapping[str, Any] | None = None,
        preprocess_version: str = "",
        segments: Sequence[tuple[float | None, float | None]] | None = None,
        vector_modalities: Sequence[str] | None = None,
        verified: Verified = Verified.INGEST,
    ) -> Upserted:
        """Insert or replace ``path`` with its vectors, in one transaction.

        ``vectors`` is ``(n, dim)`` (or ``(dim,)``) float, all of ``modality``, tagged with the library's
        model (call :meth:`bind_model` first). ``segments`` optionally gives ``(start, end)`` seconds per
        row, and ``vector_modalities`` a modality per row (a video has picture and sound vectors; default:
        every row is ``modality``). The file's old vectors are deleted; their ids come back in
        ``removed_ids`` so the caller can drop them from its index. A recorded error for the path is
        cleared. ``verified`` says who vouches for ``content_hash`` (an ingest, unless an import says
        otherwise). Raises :class:`~ibsearch.store.records.VectorError` (nothing written) for NaN/Inf
        or a wrong shape.
        """
        key = path_key(path)
        rows = self._vector_rows(key, vectors, segments, vector_modalities, modality)
        info_json = json.dumps(dict(info or {}), sort_keys=True)
        now = time.time()
        conn = self._conn
        with self.transaction():
            row = conn.execute("SELECT id FROM files WHERE path_key = ?", (key,)).fetchone()
            removed: list[int] = []
            values = (size, mtime_ns, content_hash, modality, info_json, now, int(verified))
            if row is None:
                cur = conn.execute(
                    "INSERT INTO files (size, mtime_ns, hash, modality, info, updated, verified, path_key,"
                    " path, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, key, display_path(key), now),
                )
                file_id = int(cur.lastrowid or 0)
            else:
                file_id = int(row[0])
                removed = [r[0] for r in conn.execute("SELECT id FROM vectors WHERE file_id = ?", (file_id,))]
                conn.execute("DELETE FROM vectors WHERE file_id = ?", (file_id,))
                conn.execute(
                    "UPDATE files SET size = ?, mtime_ns = ?, hash = ?, modality = ?, info = ?, updated = ?,"
                    " verified = ? WHERE id = ?",
                    (*values, file_id),
                )
            new_ids = self._insert_vectors(file_id, rows, preprocess_version)
            conn.execute("DELETE FROM errors WHERE path_key = ?", (key,))
        return Upserted(file_id, new_ids, removed, created=row is None)

    def append_vectors(
        self,
        file_id: int,
        vectors: np.ndarray,
        vector_modalities: Sequence[str],
        segments: Sequence[tuple[float | None, float | None]],
        preprocess_version: str = "",
    ) -> list[int]:
        """Add ``vectors`` ``(n, dim)`` (one modality and span each) to the stored file ``file_id``; returns
        their new ids. Inside the caller's transaction that :meth:`upsert_file` began, it writes a file of
        more vectors than memory holds at once, still atomically. Raises like :meth:`upsert_file`."""
        key = self._conn.execute("SELECT path_key FROM files WHERE id = ?", (int(file_id),)).fetchone()
        if key is None:
            raise UsageError(f"no file with id {file_id} in the library to add vectors to")
        rows = self._vector_rows(bytes(key[0]), vectors, segments, vector_modalities)
        with self.transaction():
            return self._insert_vectors(int(file_id), rows, preprocess_version)

    def _vector_rows(
        self,
        key: bytes,
        vectors: np.ndarray,
        segments: Sequence[tuple[float | None, float | None]] | None,
        modalities: Sequence[str] | None,
        modality: str = "",
    ) -> list[tuple[bytes, tuple[float | None, float | None], str]]:
        """``(blob, span, modality)`` per vector of the file ``key``, checked (see :meth:`upsert_file`)."""
        if self.model_id is None or self.dim is None:
            raise LibraryError(f"library {self.path!r} has no model yet; call bind_model() before storing")
        blobs = encode_vectors(vectors, self.dim, display_path(key))
        segs = list(segments) if segments is not None else [(None, None)] * len(blobs)
        mods = list(modalities) if modalities is not None else [modality] * len(blobs)
        for name, given in (("segments", segs), ("modalities", mods)):
            if len(given) != len(blobs):
                what = display_path(key)
                raise UsageError(f"{len(given)} {name} given for {len(blobs)} vectors of {what!r}")
        return list(zip(blobs, segs, mods, strict=True))

    def _insert_vectors(
        self, file_id: int, rows: list[tuple[bytes, tuple[float | None, float | None], str]], version: str
    ) -> list[int]:
        new_ids = []
        for blob, (start, end), row_modality in rows:
            cur = self._conn.execute(
                "INSERT INTO vectors (file_id, modality, model_id, preprocess_version, seg_start,"
                " seg_end, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (file_id, row_modality, self.model_id, version, start, end, blob),
            )
            new_ids.append(int(cur.lastrowid or 0))
        return new_ids

    def update_stat(
        self, path: PathLike, *, size: int, mtime_ns: int, verified: Verified = Verified.INGEST
    ) -> bool:
        """Record a new size/mtime for an unchanged-content file, whose hash ``verified`` vouches for now
        (an ingest that hashed it); False if ``path`` is not stored."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, verified = max(verified, ?) WHERE path_key = ?",
                (size, mtime_ns, int(verified), path_key(path)),
            )
        return cur.rowcount > 0

    def delete_files(self, paths: Iterable[PathLike]) -> list[int]:
        """Remove ``paths`` (missing ones are ignored) and their vectors; returns the removed vector ids."""
        removed: list[int] = []
        conn = self._conn
        with self.transaction():
            for p in paths:
                key = path_key(p)
                row = conn.execute("SELECT id FROM files WHERE path_key = ?", (key,)).fetchone()
                if row is None:
                    continue
                removed += [r[0] for r in conn.execute("SELECT id FROM vectors WHERE file_id = ?", (row[0],))]
                conn.execute("DELETE FROM vectors WHERE file_id = ?", (row[0],))
                conn.execute("DELETE FROM files WHERE id = ?", (row[0],))
        return removed

    # ------------------------------------------------------------------ errors

    def record_error(
        self, path: PathLike, reason: str, *, size: int | None = None, mtime_ns: int | None = None
    ) -> None:
        """Remember that ``path`` failed (latest reason wins), with its stat so an unchanged bad file
        need not be retried."""
        key = path_key(path)
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO errors (path_key, path, reason, size, mtime_ns, time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, display_path(key), reason, size, mtime_ns, time.time()),
            )

    def clear_errors(self, paths: Iterable[PathLike]) -> None:
        """Forget recorded errors for ``paths``."""
        with self.transaction():
            self._conn.executemany("DELETE FROM errors WHERE path_key = ?", [(path_key(p),) for p in paths])

    def error_for(self, path: PathLike) -> ErrorRecord | None:
        """The recorded error of ``path``, if any."""
        row = self._conn.execute(
            "SELECT path_key, reason, time, size, mtime_ns FROM errors WHERE path_key = ?", (path_key(path),)
        ).fetchone()
        return None if row is None else ErrorRecord(key_to_path(row[0]), *row[1:])

    def errors(self, limit: int | None = None) -> list[ErrorRecord]:
        """Recorded errors, newest first (all of them when ``limit`` is None)."""
        rows = self._conn.execute(
            "SELECT path_key, reason, time, size, mtime_ns FROM errors ORDER BY time DESC, path LIMIT ?",
            (-1 if limit is None else int(limit),),
        )
        return [ErrorRecord(key_to_path(r[0]), *r[1:]) for r in rows]

    def error_count(self) -> int:
        """Number of paths with a recorded error."""
        return int(self._conn.execute("SELECT count(*) FROM errors").fetchone()[0])


guard_methods(FileTables)
