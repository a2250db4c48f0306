"""``ibsearch ingest``: walk, skip the unchanged, reuse the renamed, encode the rest, commit in batches.

Order of work for each run:

1. walk the given paths (:mod:`.walk`) and compare each file with the database (:mod:`.plan`): an
   unchanged file costs one stat, a renamed or copied one reuses its stored vectors;
2. hand the rest to the encoder's media-to-vectors call (:func:`ibsearch.encoder.embed.embed_files`);
3. commit finished files to SQLite in batches, each file with all its vectors atomically, then add
   them to the indexes, which are saved when the run ends (:mod:`.commit`).

This package never imports torch: the encoder is loaded only when some file needs the model.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..encoder.media import DECODE_TIMEOUT
from ..errors import MediaError
from ..files import hash_file
from ..library import Library
from ..progress import FILES, Progress, TaskProgress, start
from .commit import Committer, IngestSummary, Job
from .plan import Planner
from .walk import WalkOptions, walk


def ingest(
    lib: Library,
    paths: Iterable[str],
    *,
    hidden: bool = False,
    exclude: Iterable[str] = (),
    follow_symlinks: bool = True,
    workers: int | None = None,
    timeout: float | None = DECODE_TIMEOUT,
    batch_size: int | None = None,
    progress: Progress | None = None,
    as_kind: str | None = None,
) -> IngestSummary:
    """Bring the library up to date with ``paths`` (files or folders); see the module docs.

    ``follow_symlinks``: follow links to files and folders (loops are detected either way); the roots
    themselves are always followed. ``workers``: decoding processes (None: automatic, 0: in this
    process); ``timeout``: seconds a worker may decode one file (a hung decoder fails that file, and
    it is retried on the next run). ``batch_size``: items per model call. ``progress`` hears about
    the files encoded (task ``"ingest"``). ``as_kind`` (``thermal``, ``depth``, ``imu``...): index
    the files under ``paths`` as that kind; the choice is remembered for these folders in later
    runs. Bad files are recorded and listed in ``failed``; they never raise. Holds the library's
    write lock.
    """
    with ingest_run(lib) as (summary, committer):
        selection = Selection(hidden, tuple(exclude), follow_symlinks, as_kind)
        to_encode = plan_run(lib, paths, selection, summary, committer)
        _encode(lib, to_encode, committer, summary, _Encoding(workers, timeout, batch_size, progress))
    return summary


@contextlib.contextmanager
def ingest_run(
    lib: Library, committer_type: type[Committer] = Committer
) -> Iterator[tuple[IngestSummary, Committer]]:
    """One ingest's write lock, summary and committer; what is left in the committer is written when
    the block ends without an error."""
    with lib.writing():
        summary = IngestSummary()
        committer = committer_type(lib, summary)
        yield summary, committer
        committer.flush()


@dataclass(frozen=True)
class Selection:
    """Which files under the paths an ingest looks at, and as what (see :func:`ingest`)."""

    hidden: bool = False
    exclude: tuple[str, ...] = ()
    follow_symlinks: bool = True
    as_kind: str | None = None


def plan_run(
    lib: Library, paths: Iterable[str], selection: Selection, summary: IngestSummary, committer: Committer
) -> list[Job]:
    """Walk ``paths`` and compare with the database: what needs nothing is counted in ``summary``,
    what is finished without the model (failed, or reusing stored vectors) goes to ``committer``,
    deleted files leave the library; returns the jobs that need the model. The caller holds the write
    lock. Local and cluster ingest share this step, so they decide alike."""
    roots = [os.path.abspath(os.fsdecode(p)) for p in paths]
    lib.bind_model()
    planner = Planner(lib.store, roots, selection.as_kind)
    to_encode: list[Job] = []
    options = WalkOptions(
        hidden=selection.hidden, exclude=list(selection.exclude), follow_symlinks=selection.follow_symlinks
    )
    options.on_error = lambda path, reason: summary.failed.append({"path": path, "reason": reason})
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
    return to_encode


#: Times a file that changes while it is being encoded is encoded again before it is given up on.
CHANGED_RETRIES = 2


@dataclass(frozen=True)
class _Encoding:
    """The options of an ingest that concern running the model."""

    workers: int | None
    timeout: float | None
    batch_size: int | None
    progress: Progress | None


def _encode(
    lib: Library, jobs: list[Job], committer: Committer, summary: IngestSummary, how: _Encoding
) -> None:
    """Run the model over ``jobs`` and commit each as soon as all its vectors are there.

    A stored vector must be the vector of the content its hash names, so after encoding each file is
    hashed again: one that changed since it was hashed (and so perhaps since it was decoded) is
    encoded again with its new hash, up to :data:`CHANGED_RETRIES` times.
    """
    if not jobs:
        return
    from ..encoder.embed import MediaItem, embed_files  # the model is loaded only when needed

    tally = _Tally(start(how.progress, "ingest", FILES), len(jobs))
    for _ in range(CHANGED_RETRIES + 1):
        changed: list[Job] = []
        items = []
        for job in jobs:
            assert job.kind is not None  # detected by the planner
            items.append(MediaItem(job.path, job.kind))
        encoder = lib.encoder(how.batch_size)
        decoded = functools.partial(tally.advance_to, jobs)
        done = embed_files(encoder, items, workers=how.workers, timeout=how.timeout, on_decoded=decoded)
        for index, result in done:
            job = jobs[index]
            if isinstance(result, MediaError):
                job.error, job.transient = result.reason, result.transient
            else:
                summary.encoded += result.encoded
                if changed_since_hashed(job):
                    changed.append(job)
                    continue
                job.modalities, job.info = result.modalities, result.info
                job.vectors, job.spans = result.vectors, result.spans
            committer.add(job)
            tally.advance(job.path)
        jobs = changed
        if not jobs:
            return
    for job in jobs:
        job.error, job.transient = "the file kept changing while it was being ingested", True
        committer.add(job)


class _Tally:
    """Files under way for the progress display: a file counts once it is decoded, so the display
    moves with every file rather than with every model batch."""

    def __init__(self, report: TaskProgress | None, total: int) -> None:
        self.report, self.total = report, total
        self.seen: set[str] = set()

    def advance_to(self, jobs: list[Job], index: int) -> None:
        """``jobs[index]`` is under way (what ``embed_files`` says of a decoded item)."""
        self.advance(jobs[index].path)

    def advance(self, path: str) -> None:
        """The file ``path`` is under way or done."""
        if path not in self.seen:
            self.seen.add(path)
            if self.report is not None:
                self.report(len(self.seen), self.total)


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


__all__ = ["IngestSummary", "Selection", "changed_since_hashed", "ingest", "ingest_run", "plan_run"]
