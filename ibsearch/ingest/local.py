"""An ingest with the model run in this process: :func:`ingest`, and the encoding loop it runs over
what the plan left for the model."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from ..encoder.media import DECODE_TIMEOUT
from ..errors import MediaError
from ..library import LibraryResources
from ..progress import FILES, Progress, TaskProgress, start
from ..store import PassageSpan
from .commit import Committer, IngestSummary, Job, vector_version
from .run import Selection, changed_since_hashed, ingest_run, plan_run


def ingest(
    lib: LibraryResources,
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
    """Bring the library up to date with ``paths`` (files or folders); see :mod:`ibsearch.ingest`.

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
    lib: LibraryResources, jobs: list[Job], committer: Committer, summary: IngestSummary, how: _Encoding
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
                job.version = vector_version(encoder.precision)
                job.vectors, job.spans = result.vectors, result.spans
                job.passages = [PassageSpan(p.start, p.end, p.text, p.page) for p in result.passages]
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


__all__ = ["ingest"]
