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
    encode_vectors,
    key_to_path,
    path_key,
)

FILE_COLS = "id, path_key, size, mtime_ns, hash, modality, info, added, updated"
FILE_COLS_F = ", ".join("f." + c.strip() for c in FILE_COLS.split(","))
INFO_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def file_record(row: Sequence[Any]) -> FileRecord:
    """A :class:`FileRecord` from a row selected with :data:`FILE_COLS`."""
    fid, key, size, mtime_ns, content_hash, modality, info, added, updated = row
    return FileRecord(
        fid, key_to_path(key), size, mtime_ns, content_hash, modality, json.loads(info), added, updated
    )


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
            f"SELECT path_key, size, mtime_ns, hash, modality FROM files WHERE {clause}", params
        )
        return {key_to_path(r[0]): FileStat(r[1], r[2], r[3], r[4]) for r in rows}

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
    ) -> Upserted:
        """Insert or replace ``path`` with its vectors, in one transaction.

        ``vectors`` is ``(n, dim)`` (or ``(dim,)``) float, all of ``modality``, tagged with the library's
        model (call :meth:`bind_model` first). ``segments`` optionally gives ``(start, end)`` seconds per
        row, and ``vector_modalities`` a modality per row (a video has picture and sound vectors; default:
        every row is ``modality``). The file's old vectors are deleted; their ids come back in
        ``removed_ids`` so the caller can drop them from its index. A recorded error for the path is
        cleared. Raises :class:`~ibsearch.store.records.VectorError` (nothing written) for NaN/Inf
        or a wrong shape.
        """
        model_id, dim = self.model_id, self.dim
        if model_id is None or dim is None:
            raise LibraryError(f"library {self.path!r} has no model yet; call bind_model() before storing")
        key = path_key(path)
        blobs = encode_vectors(vectors, dim, display_path(key))
        if segments is not None and len(segments) != len(blobs):
            raise UsageError(f"{len(segments)} segments given for {len(blobs)} vectors of {path!r}")
        segs = list(segments) if segments is not None else [(None, None)] * len(blobs)
        if vector_modalities is not None and len(vector_modalities) != len(blobs):
            raise UsageError(
                f"{len(vector_modalities)} modalities given for {len(blobs)} vectors of {path!r}"
            )
        mods = list(vector_modalities) if vector_modalities is not None else [modality] * len(blobs)
        info_json = json.dumps(dict(info or {}), sort_keys=True)
        now = time.time()
        conn = self._conn
        with self.transaction():
            row = conn.execute("SELECT id FROM files WHERE path_key = ?", (key,)).fetchone()
            removed: list[int] = []
            if row is None:
                cur = conn.execute(
                    "INSERT INTO files (path_key, path, size, mtime_ns, hash, modality, info, added, updated)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, display_path(key), size, mtime_ns, content_hash, modality, info_json, now, now),
                )
                file_id = int(cur.lastrowid or 0)
            else:
                file_id = int(row[0])
                removed = [r[0] for r in conn.execute("SELECT id FROM vectors WHERE file_id = ?", (file_id,))]
                conn.execute("DELETE FROM vectors WHERE file_id = ?", (file_id,))
                conn.execute(
                    "UPDATE files SET size = ?, mtime_ns = ?, hash = ?, modality = ?, info = ?, updated = ?"
                    " WHERE id = ?",
                    (size, mtime_ns, content_hash, modality, info_json, now, file_id),
                )
            new_ids = []
            for blob, (start, end), row_modality in zip(blobs, segs, mods, strict=True):
                cur = conn.execute(
                    "INSERT INTO vectors (file_id, modality, model_id, preprocess_version, seg_start,"
                    " seg_end, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (file_id, row_modality, model_id, preprocess_version, start, end, blob),
                )
                new_ids.append(int(cur.lastrowid or 0))
            conn.execute("DELETE FROM errors WHERE path_key = ?", (key,))
        return Upserted(file_id, new_ids, removed, created=row is None)

    def update_stat(self, path: PathLike, *, size: int, mtime_ns: int) -> bool:
        """Record a new size/mtime for an unchanged-content file; False if ``path`` is not stored."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ? WHERE path_key = ?", (size, mtime_ns, path_key(path))
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
