"""The library database: files, their vectors, errors and settings in one SQLite file (WAL mode).

SQLite is the source of truth of a library; FAISS indexes are rebuilt from it. Every write runs in a
``BEGIN IMMEDIATE`` transaction, so a batch either lands whole or not at all, and a process killed at
any point leaves a database that opens (WAL recovery). Readers in other processes never wait for a
writer; a second writer waits up to ``timeout`` seconds (SQLite's busy handler) instead of failing.

A :class:`Store` owns one connection and its transactions and, like the connection, belongs to one
thread. It keeps the ``meta`` table (schema version, model) itself and has one part per other table,
each holding the store and its connection: ``files`` (:class:`~ibsearch.store.file_rows.FileRows`),
``errors`` (:class:`~ibsearch.store.error_rows.ErrorRows`), ``vectors``
(:class:`~ibsearch.store.vector_rows.VectorRows`: what the indexes are built from and searched by) and
``settings`` (:class:`~ibsearch.store.setting_rows.SettingRows`) and ``words``
(:class:`~ibsearch.store.word_rows.WordRows`: names, folders and texts by their words, FTS5).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from ..closing import Closing
from ..errors import IbsearchError, LibraryError
from ..files import display_path
from . import schema
from .connection import connect, database_error, disk_full, guard_methods
from .error_rows import ErrorRows
from .file_rows import FileRows
from .records import FileEntry, FileRecord, PathLike, StoredVector, Upserted, VectorEntry, path_key
from .setting_rows import SettingRows
from .vector_rows import VectorRows
from .word_rows import WordRows

log = logging.getLogger(__name__)


class Store(Closing):
    """One library database: its connection, transactions and model, and a part per table.

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
            self._conn, self.read_only = connect(self.path, timeout=timeout)
        except sqlite3.DatabaseError as exc:
            raise _unusable(self.path, exc) from None
        except sqlite3.Error as exc:
            raise LibraryError(f"cannot open library database {where}: {exc}") from None
        self._savepoints = itertools.count()
        self.vectors = VectorRows(self, self._conn)
        self.files = FileRows(self, self._conn)
        self.errors = ErrorRows(self, self._conn)
        self.settings = SettingRows(self, self._conn)
        self.words = WordRows(self, self._conn)
        try:
            # NORMAL is durable against a killed process in WAL mode; only an OS crash or power loss
            # can lose the last commits, and those are re-ingested by the next run.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if schema.needs_setup(self._conn, where):
                self._set_up(where)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise _unusable(self.path, exc) from None
        except BaseException:
            self._conn.close()
            raise

    def _set_up(self, where: str) -> None:
        """Create or upgrade the schema; an older library that cannot be written says how to upgrade it
        (a WAL database whose file is read-only opens as writable and fails only at the first write)."""
        if self.read_only:
            raise _read_only_setup(self._conn, where)
        try:
            with self.transaction():
                schema.setup(self._conn, where)
        except (sqlite3.OperationalError, LibraryError) as exc:
            if "readonly" not in str(exc) and "read-only" not in str(exc):
                raise
            raise _read_only_setup(self._conn, where) from None

    # ------------------------------------------------------------------ connection and transactions

    def close(self) -> None:
        """Close the connection (uncommitted work is rolled back)."""
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group writes into one atomic commit; nested blocks become savepoints.

        The outer block takes the write lock at once (``BEGIN IMMEDIATE``), waiting up to ``timeout``
        seconds for another writer. Any exception rolls the block back and propagates.
        """
        if self._conn.in_transaction:
            with self._savepoint():
                yield self
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise database_error(self.path, exc) from None
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
        try:
            self._conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise database_error(self.path, exc) from None

    @contextlib.contextmanager
    def _savepoint(self) -> Iterator[None]:
        """A block inside the open transaction that an exception undoes alone (``SAVEPOINT``)."""
        name = f"ibsearch_{next(self._savepoints)}"
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            # A failure SQLite answered by rolling the whole transaction back left no savepoint.
            if self._conn.in_transaction:
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
            raise
        self._conn.execute(f"RELEASE {name}")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Store]:
        """Read several things from one consistent state (a read transaction; does not block writers)."""
        if self._conn.in_transaction:
            yield self
            return
        self._conn.execute("BEGIN")
        try:
            try:
                self._conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # pins the snapshot now
            except sqlite3.DatabaseError as exc:
                raise database_error(self.path, exc) from None
            yield self
        finally:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")

    # ------------------------------------------------------------------ meta: schema and model

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

    def check_model(self, model_id: str, dim: int, remembered: str | None = None) -> None:
        """Raise :class:`LibraryError` if the library holds vectors of a different model or dimension.

        ``remembered`` is how the library's model was named when it was built (a registered name or a
        model card's path): what the message tells the user to pass to ``--model``.
        """
        stored, stored_dim = self.model_id, self.dim
        if stored is None or (stored == model_id and stored_dim == dim):
            return
        if self._conn.execute("SELECT NOT EXISTS (SELECT 1 FROM vectors)").fetchone()[0]:
            return  # nothing encoded yet: bind_model may switch the model
        raise LibraryError(
            f"library {self.path!r} was built with model {stored!r} (dim {stored_dim}) but model "
            f"{model_id!r} (dim {dim}) was asked for; use --model {remembered or stored} (or "
            "IBSEARCH_MODEL), or point --library at another directory to build a separate library for "
            "this model"
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

    # ------------------------------------------------------------------ a file with its vectors

    def upsert_file(self, file: FileEntry, vectors: Sequence[VectorEntry]) -> Upserted:
        """Insert or replace ``file`` with its ``vectors``, in one transaction.

        The vectors are tagged with the library's model (call :meth:`bind_model` first). The file's old
        vectors are deleted; their ids come back in ``removed_ids`` so the caller can drop them from its
        index. A recorded error for the path is cleared. Raises
        :class:`~ibsearch.store.records.VectorError` (nothing written) for NaN/Inf or a wrong shape.
        """
        key = path_key(file.path)
        blobs = self.vectors.encode(vectors, display_path(key))
        with self.transaction():
            file_id, created = self.files.put(file)
            removed = [] if created else self.vectors.delete_of_file(file_id)
            new_ids = self.vectors.insert(file_id, vectors, blobs)
            self.words.put(file_id, display_path(key), [v.passage for v in vectors if v.passage is not None])
            self.errors.clear([key])
        return Upserted(file_id, new_ids, removed, created=created)

    def delete_files(self, paths: Iterable[PathLike]) -> list[int]:
        """Remove ``paths`` (missing ones are ignored) and their vectors; returns the removed vector ids."""
        removed: list[int] = []
        with self.transaction():
            for path in paths:
                file_id = self.files.id_of(path)
                if file_id is not None:
                    removed += self.vectors.delete_of_file(file_id)
                    self.words.delete(file_id)
                    self.files.delete(file_id)
        return removed

    def find_by_hash(
        self, content_hash: str, *, modality: str | None = None
    ) -> tuple[FileRecord, list[StoredVector]] | None:
        """A stored file with this content hash and its vectors, for reuse after a rename or copy.

        Only files whose hash was computed from bytes on this machine count (a shard's word for a file
        it names elsewhere could plant vectors for any content), with vectors of the library's current
        model (and of ``modality`` when given); the most recently updated one is returned. None when
        there is none.
        """
        record = self.files.latest_with_hash(content_hash, self.model_id, modality)
        return None if record is None else (record, self.vectors.of_model(record.id))

    # ------------------------------------------------------------------ the file itself

    def integrity_errors(self) -> list[str]:
        """SQLite's ``quick_check`` findings (empty when the file is sound)."""
        rows = [r[0] for r in self._conn.execute("PRAGMA quick_check")]
        return [] if rows == ["ok"] else rows

    def data_version(self) -> int:
        """SQLite's ``data_version``: a number that changes when another connection commits, so that a
        reader can tell whether what it loaded from the database is still current."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])


guard_methods(Store)


def _read_only_setup(conn: sqlite3.Connection, where: str) -> LibraryError:
    """Why a read-only database that needs setting up cannot be used (an older library, or none)."""
    if not schema.table_names(conn):
        return LibraryError(f"{where} is read-only and not set up as a library; choose another --library")
    return LibraryError(
        f"{where} was written by an older ibsearch (schema version {schema.stored_version(conn)}) and "
        "is read-only here, so it cannot be upgraded: run any ibsearch command on it once where it can "
        "be written (it is upgraded in place), or copy the library folder somewhere writable"
    )


def _unusable(path: str, exc: sqlite3.DatabaseError) -> IbsearchError:
    """Why the database at ``path`` cannot be opened: its disk is full, or it is no library database."""
    return disk_full(path, exc) or LibraryError(
        f"{path!r} is not a usable library database ({exc}); move it away or choose another --library"
    )
