"""The ``vectors`` table: one row per vector, with its file, index key, model and segment.

Vectors are what the indexes are built from (``chunks``), checked against (``id_summary``) and
filtered by (``select_ids``); a search hit is mapped back to its file with ``rows``. Bulk reads come
as arrays (ids ``(n,)``, vectors ``(n, dim)``), the form FAISS takes them in.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import LibraryError, UsageError
from ..files import display_path
from ..idsets import MIX_SQL, IdSetSummary, from_sums
from .connection import Owner, guard_methods
from .file_rows import INFO_KEY, prefix_clause
from .records import (
    PassageSpan,
    PathLike,
    StoredVector,
    VectorEntry,
    VectorRow,
    decode_vectors,
    encode_entries,
    key_to_path,
    load_info,
    path_key,
)


class VectorRows:
    """Reads and writes of the ``vectors`` table (``store.vectors``), tagged with the store's model."""

    def __init__(self, owner: Owner, conn: sqlite3.Connection) -> None:
        self.owner = owner
        self._conn = conn

    def _stored_vectors(self, where: str, params: Sequence[Any]) -> list[StoredVector]:
        dim = self.owner.dim or 0
        rows = self._conn.execute(
            "SELECT id, file_id, modality, model_id, preprocess_version, seg_start, seg_end, vector,"
            f" {_PASSAGE_COLUMNS} FROM vectors LEFT JOIN passages p ON p.vector_id = id WHERE {where}"
            " ORDER BY id",
            params,
        ).fetchall()
        vecs = decode_vectors([r[7] for r in rows], dim)
        return [
            StoredVector(r[0], r[1], r[2], r[3], r[4], r[5], r[6], vector=v, passage=_passage(r[8:]))
            for r, v in zip(rows, vecs, strict=True)
        ]

    def of_file(self, path: PathLike) -> list[StoredVector]:
        """The vectors stored for ``path`` (empty if it is not in the library), by id."""
        return self._stored_vectors("file_id = (SELECT id FROM files WHERE path_key = ?)", (path_key(path),))

    def of_model(self, file_id: int) -> list[StoredVector]:
        """The vectors of the store's current model stored for the file ``file_id``, by id."""
        return self._stored_vectors("file_id = ? AND model_id = ?", (int(file_id), self.owner.model_id))

    def paths_with_version(self, version: str) -> set[str]:
        """The paths of the files that have a vector of preprocessing ``version`` (reads every vector
        row: call it only when a setting says there are some)."""
        rows = self._conn.execute(
            "SELECT f.path_key FROM files f WHERE EXISTS (SELECT 1 FROM vectors v WHERE v.file_id = f.id"
            " AND v.preprocess_version = ?)",
            (version,),
        )
        return {key_to_path(r[0]) for r in rows}

    def chunks(self, modality: str, *, chunk_size: int = 16384) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids (n,) int64, vectors (n, dim) float32)`` chunks of ``modality`` in id order.

        For index rebuilds; wrap the loop in :meth:`Store.snapshot` to read one consistent state.
        """
        dim = self.owner.dim or 0
        last = -1
        while True:
            rows = self._conn.execute(
                "SELECT id, vector FROM vectors WHERE modality = ? AND id > ? ORDER BY id LIMIT ?",
                (modality, last, int(chunk_size)),
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, decode_vectors([r[1] for r in rows], dim)
            last = int(ids[-1])

    def chunks_of_file(
        self, file_id: int, *, chunk_size: int = 16384
    ) -> Iterator[tuple[np.ndarray, list[str], np.ndarray]]:
        """Yield ``(ids (n,) int64, index keys, vectors (n, dim) float32)`` chunks of one file's vectors
        in id order (``vectors_file`` holds them in that order: no sort, however many there are)."""
        dim = self.owner.dim or 0
        last = -1
        while True:
            rows = self._conn.execute(
                "SELECT id, modality, vector FROM vectors WHERE file_id = ? AND id > ? ORDER BY id LIMIT ?",
                (int(file_id), last, int(chunk_size)),
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, [r[1] for r in rows], decode_vectors([r[2] for r in rows], dim)
            last = int(ids[-1])

    def chunks_with_files(
        self, *, chunk_size: int = 8192, leave_out: str = ""
    ) -> Iterator[tuple[list[VectorRow], np.ndarray, list[str]]]:
        """Yield ``(rows, vectors (n, dim) float32, preprocess versions)`` chunks of every vector with its
        file, in file order (each file's vectors together, by id), for exports (but those of the index
        key ``leave_out``); wrap the loop in :meth:`Store.snapshot`."""
        dim = self.owner.dim or 0
        last = (-1, -1)
        while True:
            found = self._conn.execute(
                "SELECT v.id, v.file_id, f.path_key, v.modality, f.info, v.seg_start, v.seg_end, f.size,"
                " f.mtime_ns, f.hash, v.vector, v.preprocess_version FROM vectors v JOIN files f"
                " ON f.id = v.file_id WHERE (v.file_id, v.id) > (?, ?) AND v.modality != ?"
                " ORDER BY v.file_id, v.id LIMIT ?",
                (*last, leave_out, int(chunk_size)),
            ).fetchall()
            if not found:
                return
            yield (
                [_vector_row(r) for r in found],
                decode_vectors([r[10] for r in found], dim),
                [r[11] for r in found],
            )
            last = (found[-1][1], found[-1][0])

    def by_id(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (n,) int64, vectors (n, dim) float32)`` for the given ids that are stored, in id order."""
        wanted = json.dumps([int(i) for i in ids])
        rows = self._conn.execute(
            "SELECT id, vector FROM vectors WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
            (wanted,),
        ).fetchall()
        found = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return found, decode_vectors([r[1] for r in rows], self.owner.dim or 0)

    def of_files(
        self, file_ids: Iterable[int], keys: Iterable[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids (n,) int64, file ids (n,) int64, vectors (n, dim) float32)`` of the vectors of
        ``file_ids`` under the index ``keys``, in id order (by ``vectors_file``: a look-up per file)."""
        rows = self._conn.execute(
            "SELECT id, file_id, vector FROM vectors WHERE file_id IN (SELECT value FROM json_each(?))"
            " AND modality IN (SELECT value FROM json_each(?)) ORDER BY id",
            (json.dumps([int(i) for i in file_ids]), json.dumps(list(keys))),
        ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        files = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        return ids, files, decode_vectors([r[2] for r in rows], self.owner.dim or 0)

    def id_range(self, modality: str) -> tuple[int, int] | None:
        """The first and last vector id of ``modality`` (None: it has none), by two index seeks."""
        first = self._conn.execute(
            "SELECT id FROM vectors WHERE modality = ? ORDER BY id LIMIT 1", (modality,)
        )
        last = self._conn.execute(
            "SELECT id FROM vectors WHERE modality = ? ORDER BY id DESC LIMIT 1", (modality,)
        )
        ends = first.fetchone(), last.fetchone()
        return None if ends[0] is None or ends[1] is None else (int(ends[0][0]), int(ends[1][0]))

    def sample(self, modality: str, size: int = 2048, runs: int = 8) -> np.ndarray:
        """About ``size`` vectors ``(n, dim)`` float32 of ``modality``: ``runs`` runs of consecutive ids
        spread over its id range (index seeks only, so a million vectors cost what a hundred do)."""
        ends = self.id_range(modality)
        blobs: dict[int, bytes] = {}
        for start in np.linspace(*ends, runs).astype(np.int64).tolist() if ends else []:
            rows = self._conn.execute(
                "SELECT id, vector FROM vectors WHERE modality = ? AND id >= ? ORDER BY id LIMIT ?",
                (modality, int(start), max(1, size // runs)),
            )
            blobs.update(rows.fetchall())
        return decode_vectors(list(blobs.values()), self.owner.dim or 0)

    def ids(self, modality: str) -> np.ndarray:
        """All vector ids of ``modality``, sorted, as int64."""
        rows = self._conn.execute("SELECT id FROM vectors WHERE modality = ? ORDER BY id", (modality,))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def rows(self, ids: Iterable[int]) -> dict[int, VectorRow]:
        """File, modality, media info and segment of each vector id (ids not stored are left out)."""
        wanted = json.dumps([int(i) for i in ids])
        rows = self._conn.execute(
            "SELECT v.id, v.file_id, f.path_key, v.modality, f.info, v.seg_start, v.seg_end, f.size,"
            f" f.mtime_ns, f.hash, {_PASSAGE_COLUMNS} FROM vectors v JOIN files f ON f.id = v.file_id"
            " LEFT JOIN passages p ON p.vector_id = v.id WHERE v.id IN (SELECT value FROM json_each(?))",
            (wanted,),
        )
        return {r[0]: _vector_row(r, _passage(r[10:])) for r in rows}

    def select_ids(
        self,
        modality: str,
        *,
        under: PathLike | None = None,
        glob: str | None = None,
        ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
        among: np.ndarray | None = None,
    ) -> np.ndarray:
        """Ids (int64, sorted) of ``modality`` vectors whose file passes every given filter.

        ``under``: the path or a directory containing it. ``glob``: SQLite GLOB on the readable path
        (``*``, ``?``, ``[abc]``, ``[^abc]``; case-sensitive; ``*`` also crosses ``/``). ``ranges``: media
        info key -> inclusive ``(low, high)`` (None = open end); files without the key are excluded.
        ``among``: only these vector ids are looked at (a search's candidates: a look-up each).
        """
        # Files first, then each file's vectors (by vectors_file): a path filter then costs the files it
        # matches, not a look-up per vector of the modality (seconds at a million vectors). "+" keeps
        # SQLite from walking the modality index instead. Given candidates, the other way round.
        where: list[str] = ["+v.modality = ?"]
        params: list[Any] = [modality]
        joined = "files f CROSS JOIN vectors v ON f.id = v.file_id"
        if among is not None:
            joined = "vectors v CROSS JOIN files f ON f.id = v.file_id"
            where.append("v.id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([int(i) for i in among]))
        if under is not None:
            clause, extra = prefix_clause("f.path_key", under)
            where.append(clause)
            params += extra
        if glob is not None:
            where.append("f.path GLOB ?")
            params.append(glob)
        for key, (low, high) in (ranges or {}).items():
            if not INFO_KEY.match(key):
                raise UsageError(f"invalid media info key {key!r} in a filter; use names like 'duration'")
            if low is not None:
                where.append("json_extract(f.info, ?) >= ?")
                params += [f"$.{key}", low]
            if high is not None:
                where.append("json_extract(f.info, ?) <= ?")
                params += [f"$.{key}", high]
            if low is None and high is None:
                where.append("json_extract(f.info, ?) IS NOT NULL")
                params.append(f"$.{key}")
        rows = self._conn.execute(
            f"SELECT v.id FROM {joined} WHERE " + " AND ".join(where) + " ORDER BY v.id",
            params,
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    # ------------------------------------------------------------------ writes

    def encode(self, entries: Sequence[VectorEntry], what: str) -> list[bytes]:
        """The blobs to store for ``entries`` of the file ``what``, checked against the store's model.

        Raises :class:`~ibsearch.store.records.VectorError` for NaN/Inf or a wrong shape, and
        :class:`LibraryError` before the store has a model (``bind_model``).
        """
        if self.owner.model_id is None or self.owner.dim is None:
            raise LibraryError(
                f"library {self.owner.path!r} has no model yet; call bind_model() before storing"
            )
        return encode_entries(entries, self.owner.dim, what)

    def insert(self, file_id: int, entries: Sequence[VectorEntry], blobs: Sequence[bytes]) -> list[int]:
        """Store ``entries`` (encoded as ``blobs`` by :meth:`encode`) for the file ``file_id``; returns
        their new ids."""
        new_ids = []
        model_id = self.owner.model_id
        with self.owner.transaction():
            for entry, blob in zip(entries, blobs, strict=True):
                cur = self._conn.execute(
                    "INSERT INTO vectors (file_id, modality, model_id, preprocess_version, seg_start,"
                    " seg_end, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        file_id,
                        entry.modality,
                        model_id,
                        entry.preprocess_version,
                        entry.start,
                        entry.end,
                        blob,
                    ),
                )
                new_ids.append(int(cur.lastrowid or 0))
                if entry.passage is not None:
                    span = entry.passage
                    self._conn.execute(
                        "INSERT INTO passages (vector_id, char_start, char_end, page, text)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (new_ids[-1], span.char_start, span.char_end, span.page, span.text),
                    )
        return new_ids

    def append(self, file_id: int, entries: Sequence[VectorEntry]) -> list[int]:
        """Add ``entries`` to the stored file ``file_id``; returns their new ids. Inside the caller's
        transaction that :meth:`~ibsearch.store.Store.upsert_file` began, it writes a file of more
        vectors than memory holds at once, still atomically. Raises like :meth:`encode`."""
        key = self._conn.execute("SELECT path_key FROM files WHERE id = ?", (int(file_id),)).fetchone()
        if key is None:
            raise UsageError(f"no file with id {file_id} in the library to add vectors to")
        return self.insert(int(file_id), entries, self.encode(entries, display_path(bytes(key[0]))))

    def delete_of_file(self, file_id: int) -> list[int]:
        """Delete the vectors of the file ``file_id``; returns their ids."""
        with self.owner.transaction():
            rows = self._conn.execute("SELECT id FROM vectors WHERE file_id = ?", (file_id,))
            removed = [int(r[0]) for r in rows]
            self._conn.execute("DELETE FROM vectors WHERE file_id = ?", (file_id,))
        return removed

    def set_preprocess_version(self, path: PathLike, version: str) -> int:
        """Tag the vectors of ``path`` with the preprocessing ``version`` they were computed with
        (imported vectors); returns how many. Runs inside the caller's transaction when there is one."""
        with self.owner.transaction():
            cur = self._conn.execute(
                "UPDATE vectors SET preprocess_version = ? WHERE file_id = (SELECT id FROM files"
                " WHERE path_key = ?)",
                (version, path_key(path)),
            )
        return int(cur.rowcount)

    def keys_present(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` (modalities, segments keys) that have at least one vector, in the order
        given; one index seek each, however many vectors there are."""
        rows = self._conn.execute(
            "SELECT value FROM json_each(?) WHERE EXISTS (SELECT 1 FROM vectors WHERE modality = value)",
            (json.dumps(list(keys)),),
        )
        return [r[0] for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of vectors per modality (modalities without vectors are absent)."""
        rows = self._conn.execute(
            "SELECT modality, count(*) FROM vectors GROUP BY modality ORDER BY modality"
        )
        return {r[0]: int(r[1]) for r in rows}

    def count(self) -> int:
        """Number of vectors in the library."""
        return int(self._conn.execute("SELECT count(*) FROM vectors").fetchone()[0])

    def id_summary(self, modality: str) -> IdSetSummary:
        """Count, max id and checksum of the vector ids of ``modality``: what its index must hold."""
        row = self._conn.execute(
            f"SELECT count(*), max(id), sum(id), {MIX_SQL} FROM vectors WHERE modality = ?", (modality,)
        ).fetchone()
        return from_sums(*row)


_PASSAGE_COLUMNS = "p.char_start, p.char_end, p.text, p.page"


def _passage(r: Sequence[Any]) -> PassageSpan | None:
    """The :class:`PassageSpan` of the :data:`_PASSAGE_COLUMNS` of a row (None: not a passage)."""
    return None if r[0] is None else PassageSpan(int(r[0]), int(r[1]), str(r[2]), r[3])


def _vector_row(r: Sequence[Any], passage: PassageSpan | None = None) -> VectorRow:
    """A :class:`VectorRow` from the first ten columns selected by :meth:`VectorRows.rows`."""
    return VectorRow(
        r[0], r[1], key_to_path(r[2]), r[3], load_info(r[4]), r[5], r[6], r[7], r[8], r[9], passage
    )


guard_methods(VectorRows)
