"""The ``settings`` table: options a library remembers between runs (e.g. per-folder ingest settings)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .connection import Owner, guard_methods


class SettingRows:
    """Remembered settings, JSON values by key (``store.settings``)."""

    def __init__(self, owner: Owner, conn: sqlite3.Connection) -> None:
        self.owner = owner
        self._conn = conn

    def get(self, key: str, default: Any = None) -> Any:
        """A remembered setting (any JSON value), or ``default``."""
        row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        """Remember ``value`` (JSON-serialisable) under ``key``."""
        with self.owner.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )


guard_methods(SettingRows)
