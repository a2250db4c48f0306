"""The ``files`` table: which paths the library holds, with what content, and who vouches for it.

Paths are stored as their exact bytes (see :mod:`ibsearch.store.records`). A file's vectors are
written and deleted together with its row, in one transaction, by the store that owns this part
(:meth:`~ibsearch.store.Store.upsert_file`, :meth:`~ibsearch.store.Store.delete_files`).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import UsageError
from ..files import display_path
from ..modality import TEXT, segments_key
from .connection import Owner, guard_methods
from .records import FileEntry, FileRecord, FileStat, PathLike, Verified, key_to_path, load_info, path_key

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


class FileRows:
    """Reads and writes of the ``files`` table (``store.files``)."""

    def __init__(self, owner: Owner, conn: sqlite3.Connection) -> None:
        self.owner = owner
        self._conn = conn

    # ------------------------------------------------------------------ reads

    def get(self, path: PathLike) -> FileRecord | None:
        """The stored record of ``path``, or None."""
        row = self._conn.execute(f"SELECT {FILE_COLS} FROM files WHERE path_key = ?", (path_key(path),))
        found = row.fetchone()
        return None if found is None else file_record(found)

    def get_by_id(self, file_id: int) -> FileRecord | None:
        """The stored record with this ``files.id`` (a library's stable item id), or None."""
        row = self._conn.execute(f"SELECT {FILE_COLS} FROM files WHERE id = ?", (int(file_id),))
        found = row.fetchone()
        return None if found is None else file_record(found)

    def id_of(self, path: PathLike) -> int | None:
        """The ``files.id`` of ``path``, or None when it is not stored."""
        row = self._conn.execute("SELECT id FROM files WHERE path_key = ?", (path_key(path),)).fetchone()
        return None if row is None else int(row[0])

    def ids_among(self, file_ids: Iterable[int]) -> set[int]:
        """Those of ``file_ids`` that are files of the library now (a look-up each)."""
        wanted = json.dumps([int(i) for i in file_ids])
        rows = self._conn.execute(
            "SELECT id FROM files WHERE id IN (SELECT value FROM json_each(?))", (wanted,)
        )
        return {int(r[0]) for r in rows}

    def under(self, prefix: PathLike) -> dict[str, FileStat]:
        """Every stored path equal to ``prefix`` or inside it as a directory, with size, mtime and hash.

        An empty ``prefix`` means the whole library. Paths are ``os.fsdecode`` strings.
        """
        clause, params = prefix_clause("path_key", prefix)
        # A note without text segments (stored before schema 3, by a cluster ingest or by an import) is
        # incomplete: a local ingest reads it again for its passages.
        rows = self._conn.execute(
            "SELECT path_key, size, mtime_ns, hash, modality, verified, modality != ? OR EXISTS (SELECT 1"
            " FROM vectors v WHERE v.file_id = files.id AND v.modality = ?),"
            " json_extract(info, '$.taken') IS NOT NULL FROM files WHERE " + clause,
            [TEXT, segments_key(TEXT), *params],
        )
        return {
            key_to_path(r[0]): FileStat(r[1], r[2], r[3], r[4], Verified(r[5]), bool(r[6]), bool(r[7]))
            for r in rows
        }

    def paths_under(self, prefix: PathLike) -> list[str]:
        """The stored paths under ``prefix`` (see :meth:`under`), sorted by their bytes."""
        clause, params = prefix_clause("path_key", prefix)
        rows = self._conn.execute(f"SELECT path_key FROM files WHERE {clause} ORDER BY path_key", params)
        return [key_to_path(r[0]) for r in rows]

    def count_with_info(self, key: str, value: Any) -> int:
        """Number of files whose media info has ``key`` equal to ``value`` (e.g. ``has_audio`` False)."""
        if not INFO_KEY.match(key):
            raise UsageError(f"invalid media info key {key!r}")
        row = self._conn.execute(
            "SELECT count(*) FROM files WHERE json_extract(info, ?) = json_extract(?, '$')",
            (f"$.{key}", json.dumps(value)),
        ).fetchone()
        return int(row[0])

    def count(self) -> int:
        """Number of files in the library."""
        return int(self._conn.execute("SELECT count(*) FROM files").fetchone()[0])

    def counts(self) -> dict[str, int]:
        """Number of files per modality."""
        rows = self._conn.execute("SELECT modality, count(*) FROM files GROUP BY modality ORDER BY modality")
        return {r[0]: int(r[1]) for r in rows}

    def latest_with_hash(
        self, content_hash: str, model_id: str | None, modality: str | None
    ) -> FileRecord | None:
        """The most recently updated file with this content hash, a hash computed from bytes on this
        machine, and vectors of ``model_id`` (and of ``modality`` when given); None when there is none."""
        params: list[Any] = [content_hash, int(Verified.IMPORT), model_id]
        extra = ""
        if modality is not None:
            extra, params = " AND v.modality = ?", params + [modality]
        row = self._conn.execute(
            f"SELECT {FILE_COLS_F} FROM files f"
            " WHERE f.hash = ? AND f.verified >= ? AND EXISTS (SELECT 1 FROM vectors v WHERE v.file_id = f.id"
            f" AND v.model_id = ?{extra}) ORDER BY f.updated DESC, f.id DESC LIMIT 1",
            params,
        ).fetchone()
        return None if row is None else file_record(row)

    # ------------------------------------------------------------------ writes

    def put(self, file: FileEntry) -> tuple[int, bool]:
        """Insert or update the row of ``file.path``: ``(file id, created)``. Its vectors are the
        caller's to replace, in the same transaction (see :meth:`~ibsearch.store.Store.upsert_file`)."""
        key = path_key(file.path)
        info_json = json.dumps(dict(file.info), sort_keys=True)
        now = time.time()
        values = (
            file.size,
            file.mtime_ns,
            file.content_hash,
            file.modality,
            info_json,
            now,
            int(file.verified),
        )
        with self.owner.transaction():
            file_id = self.id_of(key)
            if file_id is not None:
                self._conn.execute(
                    "UPDATE files SET size = ?, mtime_ns = ?, hash = ?, modality = ?, info = ?, updated = ?,"
                    " verified = ? WHERE id = ?",
                    (*values, file_id),
                )
                return file_id, False
            cur = self._conn.execute(
                "INSERT INTO files (size, mtime_ns, hash, modality, info, updated, verified, path_key,"
                " path, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, key, display_path(key), now),
            )
            return int(cur.lastrowid or 0), True

    def update_stat(
        self, path: PathLike, *, size: int, mtime_ns: int, verified: Verified = Verified.INGEST
    ) -> bool:
        """Record a new size/mtime for an unchanged-content file, whose hash ``verified`` vouches for now
        (an ingest that hashed it); False if ``path`` is not stored."""
        with self.owner.transaction():
            cur = self._conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, verified = max(verified, ?) WHERE path_key = ?",
                (size, mtime_ns, int(verified), path_key(path)),
            )
        return cur.rowcount > 0

    def merge_info(self, path: PathLike, facts: Mapping[str, Any]) -> bool:
        """Set ``facts`` (media-info keys and values) in the info of ``path``, the rest of it kept (its
        date taken, read again without its vectors); False if ``path`` is not stored."""
        with self.owner.transaction():
            cur = self._conn.execute(
                "UPDATE files SET info = json_patch(info, ?) WHERE path_key = ?",
                (json.dumps(dict(facts), sort_keys=True), path_key(path)),
            )
        return cur.rowcount > 0

    def delete(self, file_id: int) -> None:
        """Remove the row ``file_id`` (its vectors are the caller's to delete first)."""
        with self.owner.transaction():
            self._conn.execute("DELETE FROM files WHERE id = ?", (int(file_id),))


guard_methods(FileRows)
