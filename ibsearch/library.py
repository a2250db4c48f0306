"""A library: one directory holding a SQLite database (the truth) and one FAISS index per modality.

:class:`LibraryResources` owns the resources every command works with: the :class:`~ibsearch.store.Store`,
the :class:`~ibsearch.index_sync.IndexSet`, the model (:class:`~ibsearch.encoder.runtime.Encoder`,
its towers loaded on first use) and the write lock. It runs no command itself: ``ingest(lib, ...)``,
``Searcher(lib)`` and the maintenance functions take a library; :mod:`ibsearch.engine` puts them
together as methods for users.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Self

from .closing import Closing
from .errors import LibraryError
from .files import LockHeld, file_lock
from .index import LiveIndex
from .index_sync import IndexSet
from .locations import ENV_LIBRARY, default_library, library_dir
from .progress import Progress
from .store import Store

if TYPE_CHECKING:
    from .encoder.runtime import Encoder
    from .encoder.weights.cards import ModelCard

log = logging.getLogger(__name__)

DB_NAME = "ibsearch.db"
LOCK_NAME = "write.lock"
DEFAULT_MODEL = "imagebind_huge"
ENV_MODEL = "IBSEARCH_MODEL"
MODEL_SPEC_SETTING = "model_spec"  # how the model was named: a registered name or a card's path
INT8_SETTING = "int8_vectors"  # true while the library holds vectors an int8 ingest computed


class LibraryResources(Closing):
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
        progress: Progress | None = None,
    ) -> None:
        self.root = root
        self.store = store
        self.card = card
        self.device = device
        self.precision = precision
        self.checkpoint = checkpoint
        self.model_spec = model_spec  # how the model was named: a registered name or a card's path
        self.progress = progress  # told about downloads and other long one-time work
        self.indexes = IndexSet(root, store, card.config.out_embed_dim, card.model_id)
        self._encoder: Encoder | None = None
        self._writing = False

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
        progress: Progress | None = None,
    ) -> Self:
        """Open (or with ``create=True`` create) the library at ``path`` (default :func:`default_library`).

        ``model`` is a registered name or a JSON model card path; by default ``$IBSEARCH_MODEL``, else the
        model the library was built with, else ``imagebind_huge``. A library built with another model is
        refused with a :class:`LibraryError` that says what to do.
        """
        from .encoder.weights.cards import card_names, resolve_model

        root = library_dir(path)
        db_path = root / DB_NAME
        if root.exists() and not root.is_dir():
            raise LibraryError(f"library path {str(root)!r} is a file; give a directory with --library")
        if not db_path.exists() and not create:
            raise LibraryError(
                f"no library at {str(root)!r}; run 'ibsearch ingest PATH' first (or pick one with --library)"
            )
        _refuse_a_lost_database(root, db_path, create)
        if not db_path.exists():  # a model that cannot be resolved must not leave an empty library behind
            resolve_model(os.fspath(model or os.environ.get(ENV_MODEL) or DEFAULT_MODEL))
        root.mkdir(parents=True, exist_ok=True)
        store = Store(db_path, create=create)
        try:
            spec = os.fspath(
                model or os.environ.get(ENV_MODEL) or store.settings.get(MODEL_SPEC_SETTING) or DEFAULT_MODEL
            )
            card = resolve_model(spec)
            if os.path.isfile(spec) and spec not in card_names():
                spec = os.path.abspath(spec)  # a JSON card: remembered by absolute path
            store.check_model(
                card.model_id, card.config.out_embed_dim, store.settings.get(MODEL_SPEC_SETTING)
            )
        except BaseException:
            store.close()
            raise
        return cls(
            root,
            store,
            card,
            device=device,
            precision=precision,
            checkpoint=checkpoint,
            model_spec=spec,
            progress=progress,
        )

    def close(self) -> None:
        """Close the database (indexes are saved when each write ends, see :meth:`writing`)."""
        self.store.close()

    @contextlib.contextmanager
    def writing(self, *, wait: bool = False, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the library's write lock: one ingest/remove/reindex at a time; readers never wait.

        With another writer at work this raises a :class:`LibraryError`, or with ``wait`` waits for it
        (``on_wait`` is called first). Temporary files that a killed writer left are removed; changed
        indexes are saved when the outermost block ends.
        """
        if self._writing:
            yield
            return
        if self.store.read_only:
            raise LibraryError(
                f"library {str(self.root)!r} is read-only: queries work, but changing it needs write "
                "permission on the folder and its files"
            )
        try:
            with file_lock(self.root / LOCK_NAME, wait=wait, on_wait=on_wait):
                self._writing = True
                try:
                    with self.indexes.writing():
                        yield
                finally:
                    self._writing = False
        except LockHeld:
            raise LibraryError(
                f"another ibsearch process is changing library {str(self.root)!r}; "
                "wait for it to finish (queries keep working meanwhile)"
            ) from None

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
                precision=self.run_precision(),
                checkpoint=self.checkpoint,
                batch_size=batch_size or 16,
                progress=self.progress,
            )
        elif batch_size:
            self._encoder.batch_size = batch_size
        return self._encoder

    def run_precision(self) -> str:
        """The precision the model runs at: the one asked for, except that at "auto" a library whose
        vectors an int8 ingest computed stays at int8 where the model runs on the CPU, so that a plain
        ingest neither mixes precisions nor spends hours encoding every file again; asking for fp32,
        bf16 or fp16 is how its vectors are brought to full precision (see ``ingest.plan``)."""
        if self.precision != "auto" or not self.store.settings.get(INT8_SETTING):
            return self.precision
        from .devices import resolve_device

        return "int8" if resolve_device(self.device) == "cpu" else "auto"

    def bind_model(self) -> None:
        """Record the model in the library on first write (and remember how it was named)."""
        self.store.bind_model(self.model_id, self.dim)
        if self.store.settings.get(MODEL_SPEC_SETTING) != self.model_spec:
            self.store.settings.set(MODEL_SPEC_SETTING, self.model_spec)

    # ------------------------------------------------------------------ contents

    def index(self, key: str) -> LiveIndex:
        """The index of a modality or segments key, checked against the database (see :class:`IndexSet`)."""
        return self.indexes.get(key)


def _refuse_a_lost_database(root: Path, db_path: Path, create: bool) -> None:
    """A 0-byte database is never taken for a new library when index files still hold vectors."""
    if not db_path.is_file() or db_path.stat().st_size:
        return
    held = IndexSet.vectors_on_disk(root)
    if held:
        raise LibraryError(
            f"library database {str(db_path)!r} is empty (0 bytes) but the index files beside it hold "
            f"{held} vectors: the database was truncated or replaced. Restore it from a backup (the index "
            "files cannot rebuild it: they hold no paths), or move the library folder away to start over."
        )
    if not create:
        raise LibraryError(
            f"library database {str(db_path)!r} is empty (0 bytes); restore it from a backup, or run "
            "'ibsearch ingest PATH' to build the library again"
        )


__all__ = ["DB_NAME", "ENV_LIBRARY", "ENV_MODEL", "LibraryResources", "default_library"]
