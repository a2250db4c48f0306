"""The front door: a :class:`Library` with its commands as methods, for users of the Python API.

``Library.open(path).ingest([...])``, ``.searcher()``, ``.remove``, ``.reindex``, ``.check``,
``.info``, ``.duplicates``, ``.import_vectors``, ``.export_vectors``. Each method is one call into the
module that does the work (:mod:`.ingest`, :mod:`.search`, :mod:`.maintenance`, :mod:`.transfer`,
:mod:`.duplicates`), which take
the plain :class:`ibsearch.library.LibraryResources`; nothing in the package imports this module but the
command line and ``ibsearch`` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import export, library, maintenance, transfer
from .duplicates import DuplicateGroup, find_duplicates
from .export import ExportSummary
from .folding import FOLD_THRESHOLD
from .ingest import IngestSummary, ingest
from .library import DB_NAME, ENV_LIBRARY, ENV_MODEL, default_library
from .maintenance import CheckReport
from .progress import Progress
from .search import Searcher
from .transfer import ImportSummary


class Library(library.LibraryResources):
    """An opened library with the commands as methods (see :class:`ibsearch.library.LibraryResources`)."""

    def ingest(self, paths: list[str], **options: Any) -> IngestSummary:
        """Ingest files and folders; see :func:`ibsearch.ingest.ingest` for the options."""
        return ingest(self, paths, **options)

    def ingest_on_ray(
        self, paths: list[str], *, address: str | None = None, path_map: Sequence[str] = (), **options: Any
    ) -> IngestSummary:
        """Ingest with the model run on a Ray cluster (``address``, else ``RAY_ADDRESS``, else a local
        runtime); ``path_map`` holds ``LOCAL=REMOTE`` prefixes. ``options`` are :meth:`ingest`'s
        ``hidden``, ``exclude``, ``follow_symlinks``, ``as_kind``, ``batch_size`` and ``progress``.
        See :func:`ibsearch.cluster.ingest_on_ray`."""
        from .cluster import Cluster, ingest_on_ray, parse_path_map
        from .ingest import Selection

        batch_size, progress = options.pop("batch_size", None), options.pop("progress", None)
        options["exclude"] = tuple(options.get("exclude", ()))
        cluster = Cluster(address=address, path_map=parse_path_map(path_map))
        return ingest_on_ray(
            self,
            paths,
            cluster=cluster,
            selection=Selection(**options),
            batch_size=batch_size,
            progress=progress,
        )

    def searcher(self) -> Searcher:
        """A :class:`~ibsearch.search.Searcher` over this library (closing it leaves the library open)."""
        return Searcher(self)

    def remove(self, paths: list[str]) -> int:
        """Drop files or folders from the library; see :func:`ibsearch.maintenance.remove`."""
        return maintenance.remove(self, paths)

    def reindex(self, **policy: Any) -> dict[str, int]:
        """Rebuild every index from the database (``index=``, ``exact_below=``, ``recall=``,
        ``full_scan_below=`` change the library's index policy first); see
        :func:`ibsearch.maintenance.reindex`."""
        return maintenance.reindex(self, **policy)

    def import_vectors(
        self, shards: list[str], *, progress: Progress | None = None, **options: Any
    ) -> ImportSummary:
        """Add the files and vectors of Parquet shards (``batch_rows=``: rows read at a time); see
        :func:`ibsearch.transfer.import_vectors`."""
        return transfer.import_vectors(self, shards, progress=progress, **options)

    def export_vectors(
        self, output: str, *, format: str = "parquet", progress: Progress | None = None
    ) -> ExportSummary:
        """Write every vector with its file to ``output``; see :func:`ibsearch.export.export_vectors`."""
        return export.export_vectors(self, output, format=format, progress=progress)

    def check(self, on_wait: Callable[[], None] | None = None, *, repair: bool = True) -> CheckReport:
        """Check (and repair) the indexes against the database; see :func:`ibsearch.maintenance.check`."""
        return maintenance.check(self, on_wait, repair=repair)

    def duplicates(
        self, threshold: float | None = None, targets: Sequence[str] | None = None
    ) -> list[DuplicateGroup]:
        """The groups of near-identical files, largest first (``threshold``: a likeness from 0 to 1,
        default :data:`~ibsearch.folding.FOLD_THRESHOLD`); see :func:`ibsearch.duplicates.find_duplicates`."""
        chosen = FOLD_THRESHOLD if threshold is None else threshold
        return find_duplicates(self, chosen, targets, progress=self.progress)

    def info(self, errors: int | None = 10) -> dict[str, Any]:
        """What the library holds; see :func:`ibsearch.maintenance.info`."""
        return maintenance.info(self, errors)


__all__ = ["DB_NAME", "ENV_LIBRARY", "ENV_MODEL", "CheckReport", "Library", "default_library"]
