"""The ``errors`` table: the files that could not be ingested, each with its latest reason and stat."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from ..files import display_path
from .connection import Owner, guard_methods
from .records import ErrorRecord, PathLike, key_to_path, path_key


class ErrorRows:
    """Recorded failures by path (``store.errors``); a file that ingests cleanly clears its own."""

    def __init__(self, owner: Owner, conn: sqlite3.Connection) -> None:
        self.owner = owner
        self._conn = conn

    def record(
        self, path: PathLike, reason: str, *, size: int | None = None, mtime_ns: int | None = None
    ) -> None:
        """Remember that ``path`` failed (latest reason wins), with its stat so an unchanged bad file
        need not be retried."""
        key = path_key(path)
        with self.owner.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO errors (path_key, path, reason, size, mtime_ns, time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, display_path(key), reason, size, mtime_ns, time.time()),
            )

    def clear(self, paths: Iterable[PathLike]) -> None:
        """Forget recorded errors for ``paths``."""
        with self.owner.transaction():
            self._conn.executemany("DELETE FROM errors WHERE path_key = ?", [(path_key(p),) for p in paths])

    def get(self, path: PathLike) -> ErrorRecord | None:
        """The recorded error of ``path``, if any."""
        row = self._conn.execute(
            "SELECT path_key, reason, time, size, mtime_ns FROM errors WHERE path_key = ?", (path_key(path),)
        ).fetchone()
        return None if row is None else ErrorRecord(key_to_path(row[0]), *row[1:])

    def latest(self, limit: int | None = None) -> list[ErrorRecord]:
        """Recorded errors, newest first (all of them when ``limit`` is None)."""
        rows = self._conn.execute(
            "SELECT path_key, reason, time, size, mtime_ns FROM errors ORDER BY time DESC, path LIMIT ?",
            (-1 if limit is None else int(limit),),
        )
        return [ErrorRecord(key_to_path(r[0]), *r[1:]) for r in rows]

    def count(self) -> int:
        """Number of paths with a recorded error."""
        return int(self._conn.execute("SELECT count(*) FROM errors").fetchone()[0])


guard_methods(ErrorRows)
