"""The library database: files, their vectors, errors and settings in one SQLite file (WAL mode).

SQLite is the source of truth of a library; FAISS indexes are rebuilt from it. Every write runs in a
``BEGIN IMMEDIATE`` transaction, so a batch either lands whole or not at all, and a process killed at
any point leaves a database that opens (WAL recovery). Readers in other processes never wait for a
writer; a second writer waits up to ``timeout`` seconds (SQLite's busy handler) instead of failing.

A :class:`Store` wraps one connection and, like it, belongs to one thread. Its methods are layered by
table: :class:`Database` (this module: the connection, transactions, ``meta`` and ``settings``),
:class:`~ibsearch.store.files.FileTables` (``files`` and ``errors``) and
:class:`~ibsearch.store.store.Store` (``vectors``: what the indexes are built from and searched by).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from ..closing import Closing
from ..errors import IbsearchError, LibraryError
from . import schema
from .connection import connect, database_error, disk_full, guard_methods

log = logging.getLogger(__name__)


class Database(Closing):
    """One library database: its connection, transactions, model and settings.

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
        self.db = sqlite_utils.Database(self._conn, execute_plugins=False)
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
    def transaction(self) -> Iterator[Database]:
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
    def snapshot(self) -> Iterator[Database]:
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

    def integrity_errors(self) -> list[str]:
        """SQLite's ``quick_check`` findings (empty when the file is sound)."""
        rows = [r[0] for r in self._conn.execute("PRAGMA quick_check")]
        return [] if rows == ["ok"] else rows


guard_methods(Database)


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
