"""The full check of a library's contents: every stored vector sound, every index row equal to it.

SQLite's own ``quick_check`` sees a damaged page structure, not damaged values: a page overwritten
inside a vector blob still reads back, as NaN or as a vector of the wrong length. And an index file
whose vector bytes were overwritten keeps its ids, so the id summary still matches. Both are found
here, in one pass over each modality's vectors (chunks of the database, compared with the index's
rows), so a check costs one read of the database (figures in BENCHMARKS.md). The rows of an
approximate index are codes; each stored vector is encoded again and compared with its row's code
bytes (:class:`~ibsearch.index.rows.IndexRows`), so both kinds are checked bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .index import FaissIndex, StaleIndexError
from .index.rows import IndexRows
from .index_sync import IndexSet
from .store import Store

#: How far from 1 a stored vector's norm may be (they are float32 unit vectors).
NORM_TOLERANCE = 1e-3
_SHOW = 5  # files named in a finding before "and others"


@dataclass
class Findings:
    """What :func:`scan` found for one index key."""

    key: str
    vectors: int = 0  # vectors read from the database
    damaged: list[int] = field(default_factory=list)  # stored vector ids that are not finite unit vectors
    differing: list[int] = field(default_factory=list)  # ids whose index row differs from the database
    problems: list[str] = field(default_factory=list)  # in words, naming files and what to do


def verify_file(store: Store, indexes: IndexSet, key: str) -> list[str]:
    """What is wrong with the index file of ``key`` as a whole against the database: missing, damaged,
    another dimension or other ids (empty when it matches; its rows are :func:`scan`'s)."""
    path = indexes.path(key)
    if not path.exists():
        return (
            [f"{key} index file is missing; run 'ibsearch reindex'"]
            if store.vectors.id_summary(key).size
            else []
        )
    try:
        index = FaissIndex.load(path, mmap=True)
    except StaleIndexError as exc:
        return [f"{exc}; run 'ibsearch reindex'"]
    expected = store.vectors.id_summary(key)
    problems = []
    if index.dim != indexes.dim:
        problems.append(f"{key}: index dimension {index.dim}, library {indexes.dim}")
    if tuple(index.summary()) != tuple(expected):
        problems.append(
            f"{key}: index holds {index.ntotal} vectors, database {expected.size} "
            "(or different ids); run 'ibsearch reindex'"
        )
    return problems


def scan(store: Store, indexes: IndexSet, key: str) -> Findings:
    """Read every stored vector of ``key``; compare it with the norm rule and with the index file."""
    found = Findings(key)
    index = _index_rows(indexes, key)
    with store.snapshot():
        for ids, vectors in store.vectors.chunks(key):
            found.vectors += len(ids)
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
            bad = ~np.isfinite(vectors).all(axis=1) | (np.abs(norms - 1.0) > NORM_TOLERANCE)
            found.damaged += ids[bad].tolist()
            if index is not None:
                found.differing += index.differing(ids, vectors)
    if found.damaged:
        found.problems.append(
            f"database: {len(found.damaged)} {key} vector(s) are not finite unit vectors (damaged pages?), "
            f"of {_files(store, found.damaged)}; restore the database from a backup, or 'ibsearch remove' "
            "those files and ingest them again"
        )
    if found.differing:
        found.problems.append(
            f"{key}: {len(found.differing)} index row(s) differ from the database "
            f"(of {_files(store, found.differing)}); run 'ibsearch reindex'"
        )
    return found


def _index_rows(indexes: IndexSet, key: str) -> IndexRows | None:
    """The rows of the index file of ``key``, or None (no file, or one the id summary reports)."""
    path = indexes.path(key)
    if not path.exists():
        return None
    try:
        index = FaissIndex.load(path, mmap=True)
    except StaleIndexError:
        return None  # reported by verify_file
    return IndexRows(index) if index.dim == indexes.dim else None


def _files(store: Store, ids: list[int]) -> str:
    """The files of some of ``ids``, for a message."""
    rows = store.vectors.rows(ids[: _SHOW * 4])
    paths = sorted({row.path for row in rows.values()})
    shown = ", ".join(repr(p) for p in paths[:_SHOW])
    return shown + (" and others" if len(paths) > _SHOW or len(ids) > len(rows) else "")


__all__ = ["NORM_TOLERANCE", "Findings", "scan", "verify_file"]
