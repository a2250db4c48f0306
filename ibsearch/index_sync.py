"""The library's indexes, kept in step with its database: loaded, brought up to date, rebuilt, saved.

An index file is a derived cache of the database's vectors (``<modality>.faiss`` plus a JSON
sidecar). On first use each one is checked against the database (count, max id, id checksum,
dimension, model) and brought up to date or rebuilt, never used silently stale; a big file is
memory-mapped, and what the database changed since it was saved is held beside it (a delta and
tombstones, :class:`~ibsearch.index.live.LiveIndex`). A long-lived reader (the server) asks
:meth:`IndexSet.reload_replaced` before each request whether another process wrote a file since it was
loaded (a ``stat`` of each sidecar), and loads it again. Only the writer saves, atomically, when its write
ends; that is also when an index that has crossed a size limit or changed too much since it was built
is built again (:mod:`ibsearch.index.policy`), after the changed indexes were saved, so a writer killed
during the rebuild leaves indexes that match the database or that the next open brings up to date. An
exact index the write takes past that size is dropped rather than grown (:meth:`IndexSet.add`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .files import TMP_SUFFIX, temp_prefix
from .index import StaleIndexError, builder, refine_path, sidecar_path, stamp
from .index.faiss_index import EXACT, FaissIndex
from .index.live import LiveIndex
from .index.policy import (
    EXACT_KIND,
    IndexPolicy,
    rebuild_reason,
    short_of_target,
    wanted_spec,
    why_kind,
)
from .modality import INDEX_KEYS, canonical
from .store import Store

log = logging.getLogger(__name__)

#: The setting holding a library's :class:`IndexPolicy` (``reindex --index ...`` changes it).
INDEX_SETTING = "index"
#: Index files from this size on are memory-mapped for searching instead of read into memory.
MMAP_FROM_BYTES = 64 << 20
_FETCH_CHUNK = 32768  # ids per read of stored vectors


class IndexSet:
    """One FAISS index per index key (``vision``, ``audio.segments``...) of the library at ``root``."""

    def __init__(self, root: Path, store: Store, dim: int, model_id: str) -> None:
        self.root = root
        self.store = store
        self.dim = dim
        self.model_id = model_id
        self._indexes: dict[str, LiveIndex] = {}
        self.dirty: set[str] = set()  # keys whose in-memory index differs from its file
        self.repairs: dict[str, str] = {}  # key -> what was wrong with its file and what was done
        self.rebuilt: dict[str, str] = {}  # key -> why it was built again when the last write ended
        self.outgrown: dict[str, str] = {}  # key -> why the writer dropped its exact index (see add)
        self.warnings: dict[str, str] = {}  # key -> what is wrong with the kind it was last built as
        self._stamps: dict[str, tuple[int, ...] | None] = {}  # key -> its sidecar's, as loaded or saved
        self.mmap_from = MMAP_FROM_BYTES  # bytes from which index files are memory-mapped
        self.search_device: str | None = None  # see LiveIndex.device
        self.writer = False  # inside :meth:`writing` (the library's write lock is held)
        self._policy: IndexPolicy | None = None

    def path(self, key: str) -> Path:
        """The index file of ``key``."""
        return self.root / f"{key}.faiss"

    def known(self) -> list[str]:
        """Index keys that hold vectors in the database or have a file on disk."""
        return [k for k in INDEX_KEYS if self.store.vectors.id_summary(k).size or self.path(k).exists()]

    # ------------------------------------------------------------------ the library's choice

    @property
    def policy(self) -> IndexPolicy:
        """Which index kinds this library uses (remembered in its database)."""
        if self._policy is None:
            self._policy = IndexPolicy.from_dict(self.store.settings.get(INDEX_SETTING))
        return self._policy

    def set_policy(self, policy: IndexPolicy) -> None:
        """Remember ``policy`` for this library (the writer calls this; indexes follow when rebuilt,
        as ``reindex`` does next: its ``full_scan_below`` included)."""
        self.store.settings.set(INDEX_SETTING, policy.to_dict())
        self._policy = policy

    # ------------------------------------------------------------------ loading

    def get(self, key: str) -> LiveIndex:
        """The index of ``key`` (a modality, or a segments key such as ``audio.segments``), loaded and
        checked against the database on first use."""
        if key not in INDEX_KEYS:
            key = canonical(key)
        if key in self.outgrown:  # searched during the write that outgrew it: built now, not at save
            self.rebuild(key, self.outgrown[key])
        elif key not in self._indexes:
            self._indexes[key] = self._load(key)
        index = self._indexes[key]
        index.search_on(self.search_device)
        return index

    def reload_replaced(self) -> list[str]:
        """Load again every loaded index whose file another process replaced since (a ``reindex``, a
        rebuild at the end of an ingest); returns their keys. Costs a ``stat`` per loaded index."""
        replaced = [key for key in self._indexes if stamp(self.path(key)) != self._stamps.get(key)]
        for key in replaced:
            log.info("the %s index file was replaced by another process: loading it again", key)
            self._indexes[key] = self._load(key)
        return replaced

    def _load(self, key: str, retry: bool = True) -> LiveIndex:
        path = self.path(key)
        self._stamps[key] = stamp(path)  # taken first: a file replaced while loading is loaded again
        expected = self.store.vectors.id_summary(key)
        if not path.exists():
            if expected.size:
                return self.repair(key, f"{key} index file was missing: rebuilt from the database")
            return self._live(FaissIndex(self.dim, model_id=self.model_id))
        try:
            index = FaissIndex.load(path, mmap=path.stat().st_size >= self.mmap_from)
        except StaleIndexError as exc:
            if retry and stamp(path) != self._stamps[key]:  # a writer replaced the pair while it was read
                return self._load(key, retry=False)
            return self.repair(key, f"{exc}: rebuilt from the database")
        if index.dim != self.dim or (index.model_id not in (None, self.model_id)):
            return self.repair(key, f"{key} index was built for another model: rebuilt from the database")
        live = self._live(index)
        if tuple(live.summary()) != tuple(expected):
            self._bring_up_to_date(key, live)
        return live

    def _live(self, index: FaissIndex) -> LiveIndex:
        """``index`` as it follows this library's database (see :class:`LiveIndex`)."""
        return LiveIndex(
            index, self.fetch, device=self.search_device, full_scan_below=self.policy.full_scan_below
        )

    def fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors by id: ``(ids found (n,), vectors (n, dim))`` in id order."""
        parts = [
            self.store.vectors.by_id(ids[i : i + _FETCH_CHUNK]) for i in range(0, len(ids), _FETCH_CHUNK)
        ]
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def repair(self, key: str, what: str) -> LiveIndex:
        """Rebuild ``key`` from the database (see :meth:`rebuild`) because of ``what`` (in words: logged,
        and kept in :attr:`repairs`)."""
        log.warning("%s", what)
        self.repairs[key] = what
        return self.rebuild(key)

    def catch_up(self) -> list[str]:
        """Bring every loaded index to exactly the database's vector ids (after another process
        committed); returns the keys that changed. The changes are kept beside a memory-mapped file and
        saved only by a writer's :meth:`save`."""
        changed = []
        for key, index in list(self._indexes.items()):
            if tuple(index.summary()) != tuple(self.store.vectors.id_summary(key)):
                self._bring_up_to_date(key, index)
                changed.append(key)
        return changed

    def _bring_up_to_date(self, key: str, index: LiveIndex) -> None:
        """Make ``index`` hold exactly the database's ids of ``key`` (after a crash, or while a writer
        is at work: a memory-mapped index keeps the difference beside it)."""
        with self.store.snapshot():
            added, removed = index.follow(self.store.vectors.ids(key), self.fetch)
        what = f"{key} index was behind the database: {added} added, {removed} removed"
        log.info("%s", what)
        self.repairs[key] = what
        self.dirty.add(key)

    # ------------------------------------------------------------------ building

    def rebuild(self, key: str, reason: str | None = None) -> LiveIndex:
        """A fresh index of ``key`` built from the database (marked to be saved), of the kind the
        library's policy gives its size; outside a write (a reader repairing a file) always exact."""
        live = self._rebuild(key, reason, into_file=False)
        assert live is not None  # only a build into the file gives none
        return live

    def _rebuild(self, key: str, reason: str | None, into_file: bool) -> LiveIndex | None:
        """:meth:`rebuild`; ``into_file`` (the writer's save): the index held before is let go first (its
        file was just saved), and an exact one is written to its file from the database as it is read,
        never held: None, and it is loaded from the file when next used, as a reader does."""
        policy = self.policy
        self.warnings.pop(key, None)
        if into_file:
            self._indexes.pop(key, None)
        with self.store.snapshot():
            n = self.store.vectors.id_summary(key).size
            spec = wanted_spec(policy, n, self.dim) if self.writer else EXACT
            why = reason or why_kind(policy, spec, n)
            index = self._build(key, spec, n, why, self.path(key) if into_file else None)
        self.outgrown.pop(key, None)
        if index is None:
            self._stamps[key] = stamp(self.path(key))
            return None
        live = self._live(index)
        self._indexes[key] = live
        self.dirty.add(key)
        return live

    def _build(self, key: str, spec: str, n: int, why: str, path: Path | None) -> FaissIndex | None:
        stored = _KeyVectors(self, key)
        index, warning = builder.build_by_policy(
            self.dim, spec, n, self.policy, stored, reason=why, path=path, model_id=self.model_id
        )
        if warning:
            self.warnings[key] = warning
            log.warning("%s index: %s", key, warning)
        return index

    # ------------------------------------------------------------------ changes (the writer)

    def held(self) -> dict[str, int]:
        """Vectors each index loaded in memory holds, by key (an outgrown key holds none)."""
        return {key: index.ntotal for key, index in self._indexes.items()}

    def prepare(self, key: str) -> None:
        """Load the index of ``key`` before a commit adds to it: loaded or built from the database
        after the commit, it would already hold the batch, and adding it again would duplicate it."""
        if key not in self.outgrown:
            self.get(key)

    def add(self, key: str, ids: list[int], vectors: np.ndarray) -> None:
        """Add just-committed vectors of ``key`` under their database ids."""
        if not ids or key in self.outgrown:  # the database holds them, and the rebuild reads it
            return
        if key not in self._indexes:
            # Loaded or built from the database now, it already holds these committed ids. When they
            # are all the key has, there never was a file to miss: nothing to repair or warn about.
            if not self.path(key).exists() and self.store.vectors.id_summary(key).size == len(ids):
                self.rebuild(key)
            else:
                self.get(key)  # a file that vanished while other vectors were stored is reported
            return
        index = self._indexes[key]
        # An exact index this write takes past the size at which its save rebuilds it anyway (into
        # the kind the policy gives) is dropped rather than grown: a million exact 1024-d vectors
        # are 4 GB of memory, and the rebuild reads the database in chunks.
        policy, n = self.policy, index.ntotal + len(ids)
        outgrown = index.spec == EXACT and policy.kind != EXACT_KIND and self.writer
        reason = rebuild_reason(policy, EXACT, index.record, n, self.dim) if outgrown else None
        if reason:
            log.info("%s index: %s; built again from the database when the write ends", key, reason)
            del self._indexes[key]
            self.dirty.discard(key)
            self.outgrown[key] = reason
            return
        index.add(np.asarray(ids, dtype=np.int64), vectors)
        self.dirty.add(key)

    def remove(self, ids: list[int]) -> None:
        """Drop vector ids from every index (ids are unique across keys, so each index ignores the
        ids of the others)."""
        if not ids:
            return
        arr = np.asarray(ids, dtype=np.int64)
        for key in INDEX_KEYS:
            if key not in self.outgrown and (key in self._indexes or self.path(key).exists()):
                if self.get(key).remove(arr):
                    self.dirty.add(key)

    @staticmethod
    def vectors_on_disk(root: Path) -> int:
        """How many vectors the index files in ``root`` hold, by their sidecars (0 when there are none)."""
        metas = (FaissIndex.read_meta(root / f"{key}.faiss") for key in INDEX_KEYS)
        return sum(meta.count for meta in metas if meta is not None)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Be the library's writer for the block (its caller holds the write lock): the temporary files
        of killed saves are removed first, and when the block ends, however it ends, every changed index
        is saved and those due are rebuilt (:meth:`save`). Only a writer trains an index."""
        self.writer = True
        try:
            self.remove_leftovers()
            yield
        finally:
            try:
                self.save()
            finally:
                self.writer = False

    def remove_leftovers(self) -> list[Path]:
        """Delete the temporary files of index saves that were killed halfway (the writer does, when its
        write begins: no other save can be under way then)."""
        removed = []
        for key in INDEX_KEYS:
            path = self.path(key)
            for target in (path, Path(sidecar_path(path)), Path(refine_path(path))):
                for leftover in self.root.glob(temp_prefix(target) + "*" + TMP_SUFFIX):
                    leftover.unlink(missing_ok=True)
                    removed.append(leftover)
        if removed:
            log.info("removed %d temporary file(s) of interrupted index saves", len(removed))
        return removed

    def save(self) -> None:
        """Write every changed index atomically, then build again (and save) those the policy says are
        due (only the writer does this, when its write ends)."""
        try:
            self._save_dirty()
            if self.writer:
                self.rebuilt = dict(self.outgrown)
                for key in sorted(self._indexes):
                    index = self._indexes[key]
                    reason = rebuild_reason(self.policy, index.spec, index.record, index.ntotal, self.dim)
                    if reason:
                        self.rebuilt[key] = reason
                for key, reason in sorted(self.rebuilt.items()):
                    log.info("rebuilding the %s index: %s", key, reason)
                    self._rebuild(key, reason, into_file=True)
                self._save_dirty()
        finally:
            self.writer = False

    def _save_dirty(self) -> None:
        for key in sorted(self.dirty):
            index = self._indexes[key]
            if index.pending:
                try:
                    index = self._live(index.merged(FaissIndex.load(self.path(key))))
                except StaleIndexError as exc:  # damaged since it was mapped: what it held is in the database
                    index = self.repair(key, f"{exc}: rebuilt from the database")
                self._indexes[key] = index
            index.save(self.path(key))
            self._stamps[key] = stamp(self.path(key))
        self.dirty.clear()

    # ------------------------------------------------------------------ checks and facts

    def describe(self, key: str) -> dict[str, Any]:
        """What the index file of ``key`` is, from its sidecar: kind, spec, measured recall, when it was
        built, and all that in words (``text``)."""
        meta = FaissIndex.read_meta(self.path(key))
        if meta is None:
            return {"kind": "none", "text": "no index file yet"}
        record, tuning = meta.record, meta.record.tuning
        facts: dict[str, Any] = {
            "kind": "exact" if meta.spec == EXACT else "approximate",
            "spec": meta.spec,
            "vectors": meta.count,
            "recall": 1.0 if tuning is None else tuning.recall,
            "built": record.built,
            "saved": meta.saved,
            "reason": record.reason,
            "changed_since_built": record.changed,
        }
        text = facts["kind"]
        if tuning is not None:
            facts.update(recall_k=tuning.k, nprobe=tuning.nprobe, latency_ms=tuning.latency_ms)
            text += f" {meta.spec}, recall@{tuning.k} {tuning.recall:.3f} (nprobe {tuning.nprobe})"
            if tuning.recall < self.policy.recall:
                facts["warning"] = short_of_target(meta.spec, tuning.recall, self.policy.recall)
                text += f", below the recall target {self.policy.recall}"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.built or meta.saved))
        facts["text"] = f"{text}, {'built' if record.built else 'saved'} {when}"
        return facts


class _KeyVectors:
    """The stored vectors of one index key, as :func:`~ibsearch.index.builder.build_by_policy` reads them."""

    def __init__(self, indexes: IndexSet, key: str) -> None:
        self.vectors, self.key, self.fetch = indexes.store.vectors, key, indexes.fetch

    def ids(self) -> np.ndarray:
        return self.vectors.ids(self.key)

    def chunks(self) -> builder.Chunks:
        return self.vectors.chunks(self.key)


__all__ = ["INDEX_SETTING", "MMAP_FROM_BYTES", "IndexSet"]
