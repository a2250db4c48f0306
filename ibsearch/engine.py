"""The engine: one library directory = one SQLite database (the truth) + one FAISS index per modality.

:class:`Library` composes ``store`` (files, vectors), ``index`` (FAISS) and ``encoder`` (the model);
the CLI and the Python API talk only to it. Index files are derived: on open each one is checked
against the database (count, max id, id checksum, dimension, model) and brought up to date or
rebuilt, never silently stale.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import platformdirs

from .errors import LibraryError
from .index import FaissIndex, StaleIndexError
from .modality import INDEX_KEYS, MODALITIES, canonical
from .store import Store

if TYPE_CHECKING:
    from .encoder.cards import ModelCard
    from .encoder.runtime import Encoder
    from .ingest import IngestSummary
    from .query import Searcher

log = logging.getLogger(__name__)

DB_NAME = "ibsearch.db"
LOCK_NAME = "write.lock"
DEFAULT_MODEL = "imagebind_huge"
ENV_LIBRARY = "IBSEARCH_LIBRARY"
ENV_MODEL = "IBSEARCH_MODEL"
_MODEL_SPEC_SETTING = "model_spec"


def default_library() -> Path:
    """``$IBSEARCH_LIBRARY``, else ``<platform data dir>/ibsearch/library``."""
    env = os.environ.get(ENV_LIBRARY, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("ibsearch")) / "library"


@dataclass
class CheckReport:
    """Outcome of :meth:`Library.check`."""

    ok: bool = True
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "repaired": self.repaired, "counts": self.counts}

    def lines(self) -> list[str]:
        out = [f"{m}: {n} vectors, index consistent" for m, n in self.counts.items()]
        out += [f"repaired: {r}" for r in self.repaired]
        out += [f"PROBLEM: {p}" for p in self.problems]
        out.append("ok" if self.ok else "inconsistent")
        return out


class Library:
    """An opened library. Use :meth:`open`; close with :meth:`close` or a ``with`` block."""

    def __init__(
        self,
        root: Path,
        store: Store,
        card: ModelCard,
        *,
        device: str,
        precision: str,
        checkpoint: str | None,
        model_spec: str,
    ) -> None:
        self.root = root
        self.store = store
        self.card = card
        self.device = device
        self.precision = precision
        self.checkpoint = checkpoint
        self._indexes: dict[str, FaissIndex] = {}
        self._dirty: set[str] = set()
        self._encoder: Encoder | None = None
        self._lock_fd: int | None = None
        self.model_spec = model_spec  # how the model was named: a registered name or a card's path

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        model: str | os.PathLike[str] | None = None,
        checkpoint: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        create: bool = False,
    ) -> Library:
        """Open (or with ``create=True`` create) the library at ``path`` (default :func:`default_library`).

        ``model`` is a registered name or a JSON model card path; by default ``$IBSEARCH_MODEL``, else the
        model the library was built with, else ``imagebind_huge``. A library built with another model is
        refused with a :class:`LibraryError` that says what to do.
        """
        from .encoder.cards import card_names, resolve_model

        root = Path(path).expanduser() if path else default_library()
        db_path = root / DB_NAME
        if root.exists() and not root.is_dir():
            raise LibraryError(f"library path {str(root)!r} is a file; give a directory with --library")
        if not db_path.exists() and not create:
            raise LibraryError(
                f"no library at {str(root)!r}; run 'ibsearch ingest PATH' first (or pick one with --library)"
            )
        root.mkdir(parents=True, exist_ok=True)
        store = Store(db_path, create=create)
        try:
            spec = os.fspath(
                model or os.environ.get(ENV_MODEL) or store.get_setting(_MODEL_SPEC_SETTING) or DEFAULT_MODEL
            )
            card = resolve_model(spec)
            if os.path.isfile(spec) and spec not in card_names():
                spec = os.path.abspath(spec)  # a JSON card: remembered by absolute path
            store.check_model(card.model_id, card.config.out_embed_dim)
        except BaseException:
            store.close()
            raise
        return cls(
            root, store, card, device=device, precision=precision, checkpoint=checkpoint, model_spec=spec
        )

    def close(self) -> None:
        """Close the database (indexes are saved when each write ends, see :meth:`writing`)."""
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writer lock

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the library's write lock: one ingest/remove/reindex at a time; readers never wait."""
        if self._lock_fd is not None:
            yield
            return
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LibraryError(
                    f"another ibsearch process is changing library {str(self.root)!r}; "
                    "wait for it to finish (queries keep working meanwhile)"
                ) from None
            raise
        self._lock_fd = fd
        try:
            yield
        finally:
            try:
                self.save_indexes()
            finally:
                self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ model

    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def dim(self) -> int:
        return self.card.config.out_embed_dim

    def encoder(self, batch_size: int | None = None) -> Encoder:
        """The model runtime; its towers load on first use, only those needed."""
        from .encoder.runtime import Encoder

        if self._encoder is None:
            self._encoder = Encoder(
                self.card,
                device=self.device,
                precision=self.precision,
                checkpoint=self.checkpoint,
                batch_size=batch_size or 16,
            )
        elif batch_size:
            self._encoder.batch_size = batch_size
        return self._encoder

    def bind_model(self) -> None:
        """Record the model in the library on first write (and remember how it was named)."""
        self.store.bind_model(self.model_id, self.dim)
        if self.store.get_setting(_MODEL_SPEC_SETTING) != self.model_spec:
            self.store.set_setting(_MODEL_SPEC_SETTING, self.model_spec)

    # ------------------------------------------------------------------ indexes

    def index_path(self, modality: str) -> Path:
        return self.root / f"{modality}.faiss"

    def index(self, modality: str) -> FaissIndex:
        """The index of ``modality`` (or of a segments key such as ``audio.segments``), loaded and
        checked against the database on first use."""
        if modality not in INDEX_KEYS:
            modality = canonical(modality)
        if modality not in self._indexes:
            self._indexes[modality] = self._load_index(modality)
        return self._indexes[modality]

    def _load_index(self, modality: str) -> FaissIndex:
        path = self.index_path(modality)
        expected = self.store.id_summary(modality)
        if not path.exists():
            if expected.size:
                log.info("%s index missing; building it from the database", modality)
                self._dirty.add(modality)
                return self._build_index(modality)
            return FaissIndex(self.dim, model_id=self.model_id)
        try:
            index = FaissIndex.load(path)
        except StaleIndexError as exc:
            log.warning("%s; rebuilding it from the database", exc)
            self._dirty.add(modality)
            return self._build_index(modality)
        if index.dim != self.dim or (index.model_id not in (None, self.model_id)):
            self._dirty.add(modality)
            return self._build_index(modality)
        if tuple(index.summary()) != tuple(expected):
            self._bring_up_to_date(modality, index)
        return index

    def _build_index(self, modality: str) -> FaissIndex:
        with self.store.snapshot():
            return FaissIndex.build(self.dim, self.store.iter_vectors(modality), model_id=self.model_id)

    def _bring_up_to_date(self, modality: str, index: FaissIndex) -> None:
        """Make ``index`` hold exactly the database's ids of ``modality`` (after a crash, say)."""
        with self.store.snapshot():
            db_ids = self.store.vector_ids(modality)
            held = index.ids()
            extra = np.setdiff1d(held, db_ids, assume_unique=False)
            missing = np.setdiff1d(db_ids, held, assume_unique=False)
            if len(extra):
                index.remove(extra)
            if len(missing):
                ids, vecs = self.store.vectors_by_id(missing)
                index.add(ids, vecs)
        log.info("%s index brought up to date: %d added, %d removed", modality, len(missing), len(extra))
        self._dirty.add(modality)

    def add_vectors(self, modality: str, ids: list[int], vectors: np.ndarray) -> None:
        if ids:
            self.index(modality).add(np.asarray(ids, dtype=np.int64), vectors)
            self._dirty.add(modality)

    def remove_vectors(self, ids: list[int]) -> None:
        """Drop vector ids from the indexes (ids are unique across modalities, so each index ignores
        the ids of the others)."""
        if not ids:
            return
        arr = np.asarray(ids, dtype=np.int64)
        for modality in INDEX_KEYS:
            if modality in self._indexes or self.index_path(modality).exists():
                if self.index(modality).remove(arr):
                    self._dirty.add(modality)

    def save_indexes(self) -> None:
        """Write every changed index atomically (only the writer does this)."""
        for modality in sorted(self._dirty):
            self._indexes[modality].save(self.index_path(modality))
        self._dirty.clear()

    def modalities_present(self) -> list[str]:
        counts = self.store.counts()
        return [m for m in MODALITIES if counts.get(m)]

    # ------------------------------------------------------------------ commands

    def ingest(self, paths: list[str], **options: Any) -> IngestSummary:
        """Ingest files and folders; see :func:`ibsearch.ingest.ingest`."""
        from .ingest import ingest

        with self.writing():
            return ingest(self, paths, **options)

    def searcher(self) -> Searcher:
        from .query import Searcher

        return Searcher(library=self)

    def remove(self, paths: list[str]) -> int:
        """Drop files (or everything under folders) from the library; returns the number of files removed."""
        with self.writing():
            victims: list[str] = []
            for p in paths:
                victims += self.store.paths_under(os.path.abspath(p))
            if not victims:
                raise LibraryError(
                    f"nothing in the library under {', '.join(map(repr, paths))}; see 'ibsearch info'"
                )
            self.remove_vectors(self.store.delete_files(victims))
            return len(set(victims))

    def reindex(self) -> dict[str, int]:
        """Rebuild every index from the database; returns vectors per modality."""
        with self.writing():
            counts = {}
            for modality in INDEX_KEYS:
                path = self.index_path(modality)
                if not self.store.id_summary(modality).size and not path.exists():
                    continue
                self._indexes[modality] = self._build_index(modality)
                self._dirty.add(modality)
                counts[modality] = self._indexes[modality].ntotal
            return counts

    def check(self) -> CheckReport:
        """Check the database, bring stale index files up to date (they are derived), then verify that
        every index file on disk holds exactly the database's vectors.

        Index files that were behind (after a crash, say) are listed in ``repaired``; anything that
        still disagrees afterwards, or a damaged database, is a problem (``ok`` is False).
        """
        report = CheckReport()
        for problem in self.store.integrity_errors():
            report.problems.append(f"database: {problem}")
        try:
            with self.writing():
                for modality in INDEX_KEYS:
                    if self.store.id_summary(modality).size or self.index_path(modality).exists():
                        self.index(modality)
                repaired = sorted(self._dirty)
        except LibraryError as exc:
            repaired = []
            report.problems.append(f"not repaired: {exc}")
        report.repaired = [f"{m} index brought up to date from the database" for m in repaired]
        for modality in INDEX_KEYS:
            path = self.index_path(modality)
            expected = self.store.id_summary(modality)
            if not expected.size and not path.exists():
                continue
            report.counts[modality] = expected.size
            try:
                index = FaissIndex.load(path)
            except StaleIndexError as exc:
                report.problems.append(f"{modality}: {exc}")
                continue
            if index.dim != self.dim:
                report.problems.append(f"{modality}: index dimension {index.dim}, library {self.dim}")
            if tuple(index.summary()) != tuple(expected):
                report.problems.append(
                    f"{modality}: index holds {index.ntotal} vectors, database {expected.size} "
                    "(or different ids); run 'ibsearch reindex'"
                )
        report.ok = not report.problems
        return report

    def info(self) -> dict[str, Any]:
        """Counts per modality, model, size on disk and recent errors."""
        size = sum(p.stat().st_size for p in self.root.iterdir() if p.is_file())
        notes = []
        silent = self.store.count_files_with_info("has_audio", False)
        if silent:
            notes.append(f"{silent} video(s) without sound: indexed by their picture only (no audio vector)")
        return {
            "library": str(self.root),
            "model": self.store.model_id or self.model_id,
            "dim": self.dim,
            "files": self.store.file_count(),
            "files_by_kind": self.store.file_counts(),
            "vectors": self.store.counts(),
            "size_bytes": size,
            "errors": self.store.error_count(),
            "recent_errors": [
                {"path": e.path, "reason": e.reason, "time": e.time} for e in self.store.errors(limit=10)
            ],
            "notes": notes,
        }


__all__ = ["CheckReport", "Library", "default_library"]
