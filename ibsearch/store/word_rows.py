"""The ``words`` table (SQLite FTS5): each file's name, folder and text, found by their words.

One row per file (its rowid is the file's id), written and deleted with the file's row in the same
transaction by the store that owns this part (:meth:`~ibsearch.store.Store.upsert_file`,
:meth:`~ibsearch.store.Store.delete_files`). The text of a note or document is the text its passages
read (the ``passages`` of its text segments, overlaps taken once): what the ingest already read to cut
them, so no file is read again for its words, and a file without passages (a shard's, or a cluster's)
has its name and folder only until a local ingest reads it.

A plain FTS5 table, not an external-content one: the text it indexes is assembled from many passage
rows, which no single table or view holds, and SQLite 3.40 has no ``contentless_delete``, so a
contentless one could only be updated by handing it the old text again. The cost is the text kept a
second time (README "Keywords and meaning" gives the size).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import UsageError
from .connection import Owner, guard_methods
from .records import PassageSpan

#: The columns, and what a match in each weighs in the ranking (bm25): a file's own name counts most.
WORD_COLUMNS = ("name", "folder", "text")
COLUMN_WEIGHTS = (4.0, 2.0, 1.0)

WORDS_TABLE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5(name, folder, text,"
    " tokenize = 'unicode61 remove_diacritics 2')"
)


def name_and_folder(path: str) -> tuple[str, str]:
    """The file name and the folder of a readable ``path`` (``\\xNN`` for odd bytes)."""
    folder, name = os.path.split(path)
    return name, folder


def document_text(passages: Iterable[PassageSpan]) -> str:
    """A document's text as its passages read it: each character once (overlapping windows share
    sentences), pieces that do not touch joined by a blank line."""
    parts: list[str] = []
    end = -1
    for span in sorted(passages, key=lambda p: (p.char_start, p.char_end)):
        if span.char_end <= end:
            continue
        if span.char_start < end:
            parts.append(span.text[end - span.char_start :])
        else:
            parts.append(("\n\n" if parts else "") + span.text)
        end = span.char_end
    return "".join(parts)


class WordRows:
    """Reads and writes of the ``words`` table (``store.words``)."""

    def __init__(self, owner: Owner, conn: sqlite3.Connection) -> None:
        self.owner = owner
        self._conn = conn

    def put(self, file_id: int, path: str, passages: Sequence[PassageSpan]) -> None:
        """Write the words of the file ``file_id`` at the readable ``path`` with the text of its
        ``passages`` (none: its name and folder only), replacing what it had."""
        name, folder = name_and_folder(path)
        with self.owner.transaction():
            self._conn.execute("DELETE FROM words WHERE rowid = ?", (int(file_id),))
            self._conn.execute(
                "INSERT INTO words (rowid, name, folder, text) VALUES (?, ?, ?, ?)",
                (int(file_id), name, folder, document_text(passages)),
            )

    def delete(self, file_id: int) -> None:
        """Remove the words of the file ``file_id`` (none: nothing happens)."""
        with self.owner.transaction():
            self._conn.execute("DELETE FROM words WHERE rowid = ?", (int(file_id),))

    def match(self, expression: str, limit: int) -> list[tuple[int, float]]:
        """``(file id, strength)`` of the files that ``expression`` (an FTS5 query) matches, best first,
        at most ``limit``: the strength is bm25's (larger is better; a name weighs most)."""
        weights = ", ".join(str(w) for w in COLUMN_WEIGHTS)
        rows = self._rows(
            f"SELECT rowid, -bm25(words, {weights}) AS strength FROM words WHERE words MATCH ?"
            " ORDER BY strength DESC LIMIT ?",
            (expression, int(limit)),
        )
        return [(int(r[0]), float(r[1])) for r in rows]

    def holders(self, expression: str, at_most: int) -> int:
        """How many files ``expression`` matches, counted up to ``at_most`` (it stops there: a word
        every file holds costs what a rare one does)."""
        rows = self._rows(
            "SELECT count(*) FROM (SELECT rowid FROM words WHERE words MATCH ? LIMIT ?)",
            (expression, int(at_most)),
        )
        return int(rows[0][0])

    def among(self, expression: str, file_ids: Iterable[int]) -> set[int]:
        """Those of ``file_ids`` whose words ``expression`` matches (a look-up each)."""
        wanted = json.dumps([int(i) for i in file_ids])
        rows = self._rows(
            "SELECT rowid FROM words WHERE words MATCH ? AND rowid IN (SELECT value FROM json_each(?))",
            (expression, wanted),
        )
        return {int(r[0]) for r in rows}

    def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "fts5" not in str(exc):
                raise
            # The expression is made of quoted words (ibsearch.keywords), so this is no user's typing.
            raise UsageError(f"cannot search the words {params[0]!r}: {exc}") from None

    def unmatched(self) -> tuple[int, int]:
        """``(files without words, words without a file)``: both 0 when the table is in step."""
        row = self._conn.execute(
            "SELECT (SELECT count(*) FROM files WHERE id NOT IN (SELECT rowid FROM words)),"
            " (SELECT count(*) FROM words WHERE rowid NOT IN (SELECT id FROM files))"
        ).fetchone()
        return int(row[0]), int(row[1])

    def refill(self) -> None:
        """Write every file's words again from its path and passages (a table out of step)."""
        with self.owner.transaction():
            self._conn.execute("DELETE FROM words")
            fill_words(self._conn)


def fill_words(conn: sqlite3.Connection) -> None:
    """Write the words of every stored file from its path and its passages (schema 4's upgrade)."""
    files = conn.execute("SELECT id, path FROM files ORDER BY id").fetchall()
    for file_id, path in files:
        rows = conn.execute(
            "SELECT p.char_start, p.char_end, p.text FROM passages p JOIN vectors v ON v.id = p.vector_id"
            " WHERE v.file_id = ?",
            (file_id,),
        ).fetchall()
        name, folder = name_and_folder(str(path))
        text = document_text(PassageSpan(int(a), int(b), str(t)) for a, b, t in rows)
        conn.execute(
            "INSERT INTO words (rowid, name, folder, text) VALUES (?, ?, ?, ?)", (file_id, name, folder, text)
        )


guard_methods(WordRows)
