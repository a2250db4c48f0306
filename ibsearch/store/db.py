"""The library database: files, their vectors, errors and settings in one SQLite file (WAL mode).

SQLite is the source of truth of a library; FAISS indexes are rebuilt from it. Every write runs in a
``BEGIN IMMEDIATE`` transaction, so a batch either lands whole or not at all, and a process killed at
any point leaves a database that opens (WAL recovery). Readers in other processes never wait for a
writer; a second writer waits up to ``timeout`` seconds (SQLite's busy handler) instead of failing.

A :class:`Store` wraps one connection and, like it, belongs to one thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import sqlite_utils

from ..errors import LibraryError, UsageError
from . import schema
from .reads import StoreReads
from .records import ErrorRecord, PathLike, Upserted, display_path, encode_vectors, key_to_path, path_key

log = logging.getLogger(__name__)


class Store(StoreReads):
    """One library database.

    ``Store(path)`` opens ``path`` (creating the file and its parent directories unless
    ``create=False``), switches to WAL and checks the schema. Raises :class:`LibraryError` when the
    file is not an ibsearch library, was written by a newer version, or is missing with
    ``create=False``. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        where = repr(self.path)
        if not os.path.exists(self.path):
            if not create:
                raise LibraryError(f"no library database at {where}; run 'ibsearch ingest' to create one")
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        try:
            # timeout installs SQLite's busy handler: a writer waits for another writer's commit.
            self._conn = sqlite3.connect(self.path, timeout=timeout)
        except sqlite3.Error as exc:
            raise LibraryError(f"cannot open library database {where}: {exc}") from None
        self.db = sqlite_utils.Database(self._conn, execute_plugins=False)
        try:
            self.db.enable_wal()
            # NORMAL is durable against a killed process in WAL mode; only an OS crash or power loss
            # can lose the last commits, and those are re-ingested by the next run.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if schema.needs_setup(self._conn, where):
                with self.transaction():
                    schema.setup(self._conn, where)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise LibraryError(
                f"{where} is not a usable library database ({exc}); move it away or choose another --library"
            ) from None
        except BaseException:
            self._conn.close()
            raise

    # ------------------------------------------------------------------ connection and transactions

    def close(self) -> None:
        """Close the connection (uncommitted work is rolled back)."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group writes into one atomic commit; nested blocks become savepoints.

        The outer block takes the write lock at once (``BEGIN IMMEDIATE``), waiting up to ``timeout``
        seconds for another writer. Any exception rolls the block back and propagates.
        """
        if self._conn.in_transaction:
            with self.db.atomic():
                yield self
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LibraryError(
                f"library database {self.path!r} is locked ({exc}) after waiting {self.timeout:g} s; "
                "another ibsearch process is writing to it: wait for it to finish and retry"
            ) from None
        try:
            yield self
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Store]:
        """Read several things from one consistent state (a read transaction; does not block writers)."""
        if self._conn.in_transaction:
            yield self
            return
        self._conn.execute("BEGIN")
        try:
            self._conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # pins the snapshot now
            yield self
        finally:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    # ------------------------------------------------------------------ meta, model and settings

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        return schema.stored_version(self._conn)

    @property
    def model_id(self) -> str | None:
        """The model the library's vectors come from, or None before the first :meth:`bind_model`."""
        return self._meta("model_id")

    @property
    def dim(self) -> int | None:
        """The vector dimension of the library, or None before the first :meth:`bind_model`."""
        value = self._meta("dim")
        return None if value is None else int(value)

    def check_model(self, model_id: str, dim: int) -> None:
        """Raise :class:`LibraryError` if the library holds vectors of a different model or dimension."""
        stored, stored_dim = self.model_id, self.dim
        if stored is None or (stored == model_id and stored_dim == dim):
            return
        if not self.vector_count():
            return  # nothing encoded yet: bind_model may switch the model
        raise LibraryError(
            f"library {self.path!r} was built with model {stored!r} (dim {stored_dim}) but model "
            f"{model_id!r} (dim {dim}) was asked for; use --model {stored} (or IBSEARCH_MODEL), or "
            "point --library at another directory to build a separate library for this model"
        )

    def bind_model(self, model_id: str, dim: int) -> None:
        """Record the library's model (first use), or check it matches (see :meth:`check_model`)."""
        with self.transaction():
            self.check_model(model_id, dim)
            if self.model_id != model_id or self.dim != dim:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("model_id", model_id), ("dim", str(int(dim)))],
                )

    def get_setting(self, key: str, default: Any = None) -> Any:
        """A remembered setting (any JSON value), or ``default``."""
        row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        """Remember ``value`` (JSON-serialisable) under ``key``."""
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

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
