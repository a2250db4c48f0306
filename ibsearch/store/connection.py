"""Opening the SQLite file, and turning every SQLite failure into an error that says what to do.

A library on a read-only medium (or a folder the user may not write) is opened read-only, so that it
can still be queried. Any ``sqlite3.DatabaseError`` a store method meets (a damaged page, a locked
or read-only file) becomes a :class:`~ibsearch.errors.LibraryError` naming the file (a full disk a
:class:`~ibsearch.errors.DiskFullError` naming its folder), never a raw traceback:
:func:`guard_methods` wraps the public methods of the store classes once, when they are defined.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..errors import DiskFullError, IbsearchError, LibraryError

log = logging.getLogger(__name__)

_C = TypeVar("_C", bound=type)


#: Free bytes below which SQLite's "disk I/O error" is taken for a full disk: growing the WAL or its
#: shared-memory file is an I/O error, not SQLITE_FULL, when a tmpfs cannot find the pages.
NEARLY_FULL = 1 << 20


def disk_full(path: str, exc: sqlite3.Error) -> DiskFullError | None:
    """The :class:`DiskFullError` a failure of the database at ``path`` amounts to, if it does."""
    folder = os.path.dirname(os.path.abspath(path))
    text = str(exc)
    if "disk is full" in text:  # SQLITE_FULL
        return DiskFullError(folder, text)
    if "disk I/O error" in text:
        try:
            if shutil.disk_usage(folder).free < NEARLY_FULL:
                return DiskFullError(folder, text)
        except OSError:
            pass
    return None


def database_error(path: str, exc: sqlite3.DatabaseError) -> IbsearchError:
    """What a failure of the library database at ``path`` means for the user, and what to do."""
    full = disk_full(path, exc)
    if full is not None:
        return full
    text = str(exc)
    if "locked" in text or "busy" in text:
        return LibraryError(
            f"library database {path!r} is busy ({text}); another ibsearch process is writing to it: "
            "wait for it to finish and retry"
        )
    if "readonly" in text or "read-only" in text:
        return LibraryError(
            f"library database {path!r} is read-only ({text}): queries work, but ingest, remove, reindex "
            f"and check need write permission on {os.path.dirname(os.path.abspath(path))!r}"
        )
    if "malformed JSON" in text:
        # A value, not the file: SQLite's JSON functions met media info they do not read.
        return LibraryError(
            f"library database {path!r} holds media info that is not JSON to SQLite ({text}); the "
            "database itself is not damaged: 'ibsearch remove' the files with odd media info and "
            "ingest or import them again"
        )
    return LibraryError(
        f"library database {path!r} is damaged ({text}). Restore it from a backup, or move it away and "
        "ingest your folders again into a new library (the index files cannot rebuild it: they hold no "
        "paths). If only an index file is damaged, 'ibsearch reindex' rebuilds it from the database."
    )


def guarded(path_of: Callable[[Any], str], method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with :func:`database_error` applied to the SQLite failures it raises (generators too)."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from method(self, *args, **kwargs)
            except sqlite3.DatabaseError as exc:
                raise database_error(path_of(self), exc) from None

        return generator

    @functools.wraps(method)
    def function(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            raise database_error(path_of(self), exc) from None

    return function


class Owner(Protocol):
    """What a table part asks of the store that owns it: the file, its transactions and its model."""

    path: str

    def transaction(self) -> AbstractContextManager[Any]: ...

    @property
    def model_id(self) -> str | None: ...

    @property
    def dim(self) -> int | None: ...


def store_path(obj: Any) -> str:
    """The database path of a store, or of the store a table part belongs to (its ``owner``)."""
    return str(getattr(obj, "owner", obj).path)


def guard_methods(cls: _C) -> _C:
    """Guard every public method and property defined on ``cls`` (see :func:`guarded`)."""
    path_of = store_path  # read when an error happens
    for name, value in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(value, property) and value.fget is not None:
            setattr(cls, name, property(guarded(path_of, value.fget), value.fset, value.fdel, value.__doc__))
        elif inspect.isfunction(value) and not hasattr(value, "__wrapped__"):
            setattr(cls, name, guarded(path_of, value))
    return cls


def connect(path: str, *, timeout: float) -> tuple[sqlite3.Connection, bool]:
    """Open ``path``: ``(connection, read_only)``. Falls back to read-only when the file or its folder
    cannot be written, and to an immutable read (no locks) when not even SQLite's shared-memory file
    can be created beside it (a library on a read-only medium, which nobody can be writing)."""
    # timeout installs SQLite's busy handler: a writer waits for another writer's commit.
    conn = sqlite3.connect(path, timeout=timeout)
    try:
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        return conn, False
    except sqlite3.OperationalError as exc:
        if "readonly" not in str(exc) and "unable to open" not in str(exc):
            conn.close()
            raise
        conn.close()
    uri = Path(path).absolute().as_uri()
    for mode in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(uri + mode, timeout=timeout, uri=True)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.OperationalError:
            conn.close()
            continue
        log.info("library database %s is read-only: opened for queries only", path)
        return conn, True
    raise LibraryError(f"cannot open library database {path!r}: it is neither writable nor readable")


__all__ = ["Owner", "connect", "database_error", "disk_full", "guard_methods", "guarded", "store_path"]
