"""The steps every ingest run shares, local or on a cluster: the write lock and the summary, which files
are looked at, the walk compared with the database, and the second hash that catches a file changed
while it was being encoded."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..files import hash_file
from ..library import INT8_SETTING, LibraryResources
from .commit import INT8_VERSION, Committer, IngestSummary, Job
from .plan import READERS_SETTING, READERS_VERSION, Planner
from .walk import WalkOptions, walk

#: Setting: the counts of the last ingest that ended (what it skipped and failed by extension), and when.
LAST_INGEST = "last_ingest"


@contextlib.contextmanager
def ingest_run(
    lib: LibraryResources, committer_type: type[Committer] = Committer
) -> Iterator[tuple[IngestSummary, Committer]]:
    """One ingest's write lock, summary and committer; what is left in the committer is written when
    the block ends without an error, and the run's counts are remembered for ``info``."""
    with lib.writing():
        summary = IngestSummary()
        committer = committer_type(lib, summary)
        yield summary, committer
        committer.flush()
        if lib.store.settings.get(INT8_SETTING) and lib.run_precision() != "int8" and not _int8_files(lib):
            lib.store.settings.set(INT8_SETTING, False)  # every int8 vector was replaced
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lib.store.settings.set(LAST_INGEST, {"time": when, **summary.counts()})


@dataclass(frozen=True)
class Selection:
    """Which files under the paths an ingest looks at, and as what (see :func:`ingest`)."""

    hidden: bool = False
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = True
    as_kind: str | None = None


def plan_run(
    lib: LibraryResources,
    paths: Iterable[str],
    selection: Selection,
    summary: IngestSummary,
    committer: Committer,
    *,
    passages: bool = True,
) -> list[Job]:
    """Walk ``paths`` and compare with the database: what needs nothing is counted in ``summary``,
    what is finished without the model (failed, or reusing stored vectors) goes to ``committer``,
    deleted files leave the library; returns the jobs that need the model. The caller holds the write
    lock. Local and cluster ingest share this step, so they decide alike; but ``passages=False`` (a run
    whose results cannot hold passages: a cluster's shards) does not encode again a note without them."""
    roots = [os.path.abspath(os.fsdecode(p)) for p in paths]
    lib.bind_model()
    int8 = lib.run_precision() == "int8"
    redo = frozenset() if int8 or not lib.store.settings.get(INT8_SETTING) else _int8_files(lib)
    planner = Planner(lib.store, roots, selection.as_kind, passages=passages, int8=int8, redo=redo)
    to_encode: list[Job] = []
    options = WalkOptions(
        hidden=selection.hidden, exclude=list(selection.exclude), follow_symlinks=selection.follow_symlinks
    )
    options.on_error = lambda path, reason: summary.failed.append({"path": path, "reason": reason})
    options.on_skip = summary.skip
    for found in walk(roots, options):
        job = planner.visit(found, summary)
        if job is None:
            continue
        if job.error is not None or job.vectors:
            committer.add(job)
        else:
            to_encode.append(job)
    gone = planner.gone()
    if gone:
        lib.indexes.remove(lib.store.delete_files(gone))
        summary.removed = len(gone)
    lib.store.errors.clear(planner.vanished_errors())
    if planner.new_readers:  # failures recorded before now are tried again when next met
        lib.store.settings.set(READERS_SETTING, {"version": READERS_VERSION, "since": planner.readers_since})
    return to_encode


def _int8_files(lib: LibraryResources) -> frozenset[str]:
    """The files whose vectors an int8 ingest computed (a run at full precision encodes them again)."""
    return frozenset(lib.store.vectors.paths_with_version(INT8_VERSION))


def changed_since_hashed(job: Job) -> bool:
    """Whether ``job``'s file no longer has the content hash it was planned with; if so, the job
    takes the file's current stat and hash, ready to be encoded again."""
    try:
        st = os.stat(job.path)
        content_hash = hash_file(job.path)
    except OSError:
        return False  # gone or unreadable now: the next run sees that; the vectors are of the hash
    if content_hash == job.content_hash:
        return False
    job.st, job.content_hash = st, content_hash
    return True


__all__ = ["LAST_INGEST", "Selection", "changed_since_hashed", "ingest_run", "plan_run"]
