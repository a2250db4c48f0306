"""The library database schema, its version, and the checks made when a database is opened.

Bump :data:`SCHEMA_VERSION` with every change to :data:`TABLES` and add a step to :data:`MIGRATIONS`
that turns version ``n - 1`` into ``n`` (run inside the same write transaction as the version bump).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

from ..errors import LibraryError
from .records import load_info
from .word_rows import WORDS_TABLE, fill_words

SCHEMA_VERSION = 4

# The span and text of each text segment (a passage of a long text), by its vector: characters, not the
# seconds that seg_start/seg_end hold for sound and pictures.
PASSAGES_TABLE = """CREATE TABLE IF NOT EXISTS passages (
        vector_id INTEGER PRIMARY KEY REFERENCES vectors(id) ON DELETE CASCADE,
        char_start INTEGER NOT NULL,    -- offset of its first character in the document's text
        char_end INTEGER NOT NULL,      -- offset just past its last character
        page INTEGER,                   -- the page it begins on (PDF), from 1; NULL without pages
        text TEXT NOT NULL
    )"""

TABLES: tuple[str, ...] = (
    # Key/value facts about the whole library: schema_version, model_id, dim, created.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        path_key BLOB NOT NULL UNIQUE,  -- os.fsencode(path): exact, also for non-UTF-8 names
        path TEXT NOT NULL,             -- readable UTF-8 form (\\xNN for undecodable bytes)
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        hash TEXT NOT NULL,             -- BLAKE2b-256 hex of the content
        verified INTEGER NOT NULL DEFAULT 2,  -- who vouches for hash: records.Verified (0-2)
        modality TEXT NOT NULL,
        info TEXT NOT NULL DEFAULT '{}',  -- JSON media info: width, height, duration, sample_rate, ...
        added REAL NOT NULL,
        updated REAL NOT NULL
    )""",
    "CREATE INDEX files_path ON files(path)",
    "CREATE INDEX files_hash ON files(hash)",
    "CREATE INDEX files_modality ON files(modality)",
    # AUTOINCREMENT: a deleted id is never handed out again, so an index file that still holds it
    # can never be mistaken for one that points at a newer vector.
    """CREATE TABLE vectors (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- the FAISS id
        file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
        modality TEXT NOT NULL,
        model_id TEXT NOT NULL,
        preprocess_version TEXT NOT NULL,
        seg_start REAL,                 -- seconds; NULL for a vector of the whole file
        seg_end REAL,
        vector BLOB NOT NULL            -- dim little-endian float32, never NaN
    )""",
    "CREATE INDEX vectors_file ON vectors(file_id)",
    "CREATE INDEX vectors_modality ON vectors(modality, id)",
    PASSAGES_TABLE,
    # One row per failing path (the latest reason), removed when the path ingests cleanly.
    """CREATE TABLE errors (
        path_key BLOB PRIMARY KEY,
        path TEXT NOT NULL,
        reason TEXT NOT NULL,
        size INTEGER,
        mtime_ns INTEGER,
        time REAL NOT NULL
    )""",
    "CREATE INDEX errors_time ON errors(time)",
    # Remembered options (e.g. per-folder ingest settings), values are JSON.
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # Each file's name, folder and text by their words (FTS5; rowid = files.id): see store.word_rows.
    WORDS_TABLE,
)

REQUIRED_TABLES = frozenset({"meta", "files", "vectors", "errors", "settings", "passages", "words"})


#: MIGRATIONS[n] upgrades a version n - 1 database to version n.
def _to_version_2(conn: sqlite3.Connection) -> None:
    """``files.verified``; rows written before keep the trust they had then (as read by an ingest). Media
    info that older imports stored with NaN or Infinity (no JSON to SQLite: every filter on it failed)
    is written again with those values as null."""
    conn.execute("ALTER TABLE files ADD COLUMN verified INTEGER NOT NULL DEFAULT 2")
    bad = conn.execute("SELECT id, info FROM files WHERE NOT json_valid(info)").fetchall()
    for file_id, info in bad:
        try:
            fixed = json.dumps(load_info(info), sort_keys=True)
        except ValueError:
            fixed = "{}"
        conn.execute("UPDATE files SET info = ? WHERE id = ?", (fixed, file_id))


def _to_version_3(conn: sqlite3.Connection) -> None:
    """The ``passages`` table. Notes stored before have no passages yet: the next ingest of each (a
    text file without ``text.segments`` vectors) encodes it again, so nothing else changes here."""
    conn.execute(PASSAGES_TABLE)


def _to_version_4(conn: sqlite3.Connection) -> None:
    """The ``words`` table, filled for every stored file: its name and folder, and the text its
    passages read (a note stored without passages gets its text when an ingest reads it again). A
    table left by a newer ibsearch that wrote this library before is written again from scratch."""
    conn.execute("DROP TABLE IF EXISTS words")
    conn.execute(WORDS_TABLE)
    fill_words(conn)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: _to_version_2,
    3: _to_version_3,
    4: _to_version_4,
}


def table_names(conn: sqlite3.Connection) -> set[str]:
    """Names of the tables in the database behind ``conn``."""
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def stored_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in ``meta`` (the database must have a meta table)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def needs_setup(conn: sqlite3.Connection, where: str) -> bool:
    """Check an opened database without taking a write lock.

    Returns True when it is empty or older than this version (a writer must then call :func:`setup`).
    Raises :class:`LibraryError` when it belongs to something else or to a newer ibsearch.
    """
    names = table_names(conn)
    if not names:
        return True
    if "meta" not in names:
        raise LibraryError(
            f"{where} is an SQLite database but not an ibsearch library (no 'meta' table); "
            "choose another --library directory"
        )
    version = stored_version(conn)
    if version > SCHEMA_VERSION:
        raise LibraryError(
            f"{where} was written by a newer ibsearch (schema version {version}; this version "
            f"understands up to {SCHEMA_VERSION}); upgrade ibsearch to use this library"
        )
    return version < SCHEMA_VERSION or not REQUIRED_TABLES <= names


def setup(conn: sqlite3.Connection, where: str) -> None:
    """Create or upgrade the schema; the caller holds a write transaction (``BEGIN IMMEDIATE``)."""
    # Re-check under the lock: another process may have created or upgraded it meanwhile.
    if not needs_setup(conn, where):
        return
    if not table_names(conn):
        for ddl in TABLES:
            conn.execute(ddl)
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [("schema_version", str(SCHEMA_VERSION)), ("created", repr(time.time()))],
        )
        return
    version = stored_version(conn)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        step = MIGRATIONS.get(target)
        if step is None:
            raise LibraryError(
                f"{where} has schema version {version} and no upgrade to {target} exists; "
                "rebuild the library by ingesting into a new --library directory"
            )
        step(conn)
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
    )
    missing = REQUIRED_TABLES - table_names(conn)
    if missing:
        raise LibraryError(f"{where} lacks tables {sorted(missing)}; it is damaged, rebuild the library")
