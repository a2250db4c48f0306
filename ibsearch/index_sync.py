"""The library's indexes, kept in step with its database: loaded, brought up to date, saved, verified.

An index file is a derived cache of the database's vectors (``<modality>.faiss`` plus a JSON
sidecar). On first use each one is checked against the database (count, max id, id checksum,
dimension, model) and brought up to date or rebuilt, never used silently stale; only the writer
saves them, atomically, when its write ends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .files import TMP_SUFFIX, temp_prefix
from .index import FaissIndex, StaleIndexError, sidecar_path
from .modality import INDEX_KEYS, canonical
from .store import Store

log = logging.getLogger(__name__)


class IndexSet:
    """One FAISS index per index key (``vision``, ``audio.segments``...) of the library at ``root``."""

    def __init__(self, root: Path, store: Store, dim: int, model_id: str) -> None:
        self.root = root
        self.store = store
        self.dim = dim
        self.model_id = model_id
        self._indexes: dict[str, FaissIndex] = {}
        self.dirty: set[str] = set()  # keys whose in-memory index differs from its file
        self.repairs: dict[str, str] = {}  # key -> what was wrong with its file and what was done

    def path(self, key: str) -> Path:
        """The index file of ``key``."""
        return self.root / f"{key}.faiss"

    def known(self) -> list[str]:
        """Index keys that hold vectors in the database or have a file on disk."""
        return [key for key in INDEX_KEYS if self.store.id_summary(key).size or self.path(key).exists()]

    def get(self, key: str) -> FaissIndex:
        """The index of ``key`` (a modality, or a segments key such as ``audio.segments``), loaded and
        checked against the database on first use."""
        if key not in INDEX_KEYS:
            key = canonical(key)
        if key not in self._indexes:
            self._indexes[key] = self._load(key)
        return self._indexes[key]

    def _load(self, key: str) -> FaissIndex:
        path = self.path(key)
        expected = self.store.id_summary(key)
        if not path.exists():
            if expected.size:
                return self._repair(key, f"{key} index file was missing: rebuilt from the database")
            return FaissIndex(self.dim, model_id=self.model_id)
        try:
            index = FaissIndex.load(path)
        except StaleIndexError as exc:
            return self._repair(key, f"{exc}: rebuilt from the database")
        if index.dim != self.dim or (index.model_id not in (None, self.model_id)):
            return self._repair(key, f"{key} index was built for another model: rebuilt from the database")
        if tuple(index.summary()) != tuple(expected):
            self._bring_up_to_date(key, index)
        return index

    def _repair(self, key: str, what: str) -> FaissIndex:
        log.warning("%s", what)
        self.repairs[key] = what
        return self.rebuild(key)

    def rebuild(self, key: str) -> FaissIndex:
        """A fresh index of ``key`` built from the database (marked to be saved)."""
        with self.store.snapshot():
            index = FaissIndex.build(self.dim, self.store.iter_vectors(key), model_id=self.model_id)
        self._indexes[key] = index
        self.dirty.add(key)
        return index

    def _bring_up_to_date(self, key: str, index: FaissIndex) -> None:
        """Make ``index`` hold exactly the database's ids of ``key`` (after a crash, say)."""
        with self.store.snapshot():
            db_ids = self.store.vector_ids(key)
            held = index.ids()
            extra = np.setdiff1d(held, db_ids, assume_unique=False)
            missing = np.setdiff1d(db_ids, held, assume_unique=False)
            if len(extra):
                index.remove(extra)
            if len(missing):
                ids, vecs = self.store.vectors_by_id(missing)
                index.add(ids, vecs)
        what = f"{key} index was behind the database: {len(missing)} added, {len(extra)} removed"
        log.info("%s", what)
        self.repairs[key] = what
        self.dirty.add(key)

    def add(self, key: str, ids: list[int], vectors: np.ndarray) -> None:
        """Add just-committed vectors of ``key`` under their database ids."""
        if not ids:
            return
        if key not in self._indexes:
            self.get(key)  # loaded from the database now, it already holds these committed ids
            return
        self._indexes[key].add(np.asarray(ids, dtype=np.int64), vectors)
        self.dirty.add(key)

    def remove(self, ids: list[int]) -> None:
        """Drop vector ids from every index (ids are unique across keys, so each index ignores the
        ids of the others)."""
        if not ids:
            return
        arr = np.asarray(ids, dtype=np.int64)
        for key in INDEX_KEYS:
            if key in self._indexes or self.path(key).exists():
                if self.get(key).remove(arr):
                    self.dirty.add(key)

    @staticmethod
    def vectors_on_disk(root: Path) -> int:
        """How many vectors the index files in ``root`` hold, by their sidecars (0 when there are none)."""
        metas = (FaissIndex.read_meta(root / f"{key}.faiss") for key in INDEX_KEYS)
        return sum(meta.count for meta in metas if meta is not None)

    def remove_leftovers(self) -> list[Path]:
        """Delete the temporary files of index saves that were killed halfway (only the writer, which
        holds the lock, may call this: no other save can be under way). Returns what was removed."""
        removed = []
        for key in INDEX_KEYS:
            for target in (self.path(key), Path(sidecar_path(self.path(key)))):
                for leftover in self.root.glob(temp_prefix(target) + "*" + TMP_SUFFIX):
                    leftover.unlink(missing_ok=True)
                    removed.append(leftover)
        if removed:
            log.info("removed %d temporary file(s) of interrupted index saves", len(removed))
        return removed

    def save(self) -> None:
        """Write every changed index atomically (only the writer does this)."""
        for key in sorted(self.dirty):
            self._indexes[key].save(self.path(key))
        self.dirty.clear()

    def verify(self, key: str) -> list[str]:
        """What is wrong with the index file of ``key`` against the database (empty when it matches)."""
        if not self.path(key).exists():
            return (
                [f"{key} index file is missing; run 'ibsearch reindex'"]
                if self.store.id_summary(key).size
                else []
            )
        try:
            index = FaissIndex.load(self.path(key))
        except StaleIndexError as exc:
            return [f"{exc}; run 'ibsearch reindex'"]
        expected = self.store.id_summary(key)
        problems = []
        if index.dim != self.dim:
            problems.append(f"{key}: index dimension {index.dim}, library {self.dim}")
        if tuple(index.summary()) != tuple(expected):
            problems.append(
                f"{key}: index holds {index.ntotal} vectors, database {expected.size} "
                "(or different ids); run 'ibsearch reindex'"
            )
        return problems


__all__ = ["IndexSet"]
