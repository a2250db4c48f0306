"""An ingest with the model run in this process: :func:`ingest`, and the encoding loop it runs over
what the plan left for the model."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..encoder.media import DECODE_TIMEOUT
from ..errors import MediaError
from ..library import LibraryResources
from ..progress import INPUTS, Progress, TaskProgress, start
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
    the work of encoding (task ``"ingest"``, counted in the model's inputs, with the file under
    way). ``as_kind`` (``thermal``, ``depth``, ``imu``...): index the files under ``paths`` as that
    kind; the choice is remembered for these folders in later runs. Bad files are recorded and
    listed in ``failed``; they never raise. Holds the library's write lock.
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
    from ..encoder.media.probe import probe
    from ..encoder.work import planned_inputs

    tally = _Tally(start(how.progress, "ingest", INPUTS))
    for _ in range(CHANGED_RETRIES + 1):
        changed: list[Job] = []
        items = []
        for job in jobs:
            assert job.kind is not None  # detected by the planner
            # Probed here, not by embed_files, to weigh each file's work before any is encoded.
            items.append(MediaItem(job.path, job.kind, probe(job.path, job.kind)))
            tally.plan(job.path, planned_inputs(job.kind, items[-1].info or {}, job.st.st_size))
        encoder = tally.counting(lib.encoder(how.batch_size))
        decoded = functools.partial(tally.under_way, jobs)
        done = embed_files(encoder, items, workers=how.workers, timeout=how.timeout, on_decoded=decoded)
        for index, result in done:
            job = jobs[index]
            tally.finished(job.path, 0 if isinstance(result, MediaError) else result.encoded)
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
        jobs = changed
        if not jobs:
            return
    for job in jobs:
        job.error, job.transient = "the file kept changing while it was being ingested", True
        committer.add(job)


class _Tally:
    """The work of encoding, for the progress display: the model's inputs, planned per file from its
    media facts (:func:`~ibsearch.encoder.work.planned_inputs`) and counted as the model encodes
    them, so that the time left follows the work (a long recording's windows), not the number of
    files. A finished file's plan is replaced by what it took; the file under way is named."""

    def __init__(self, report: TaskProgress | None) -> None:
        self.report = report
        self.planned: dict[str, int] = {}
        self.total = self.done = 0
        self.current: str | None = None

    def plan(self, path: str, inputs: int) -> None:
        self.total += inputs - self.planned.get(path, 0)
        self.planned[path] = inputs

    def counting(self, encoder: Any) -> Any:
        """``encoder``, counting here what it encodes (itself when nobody listens)."""
        return encoder if self.report is None else _Counting(encoder, self)

    def under_way(self, jobs: list[Job], index: int) -> None:
        """``jobs[index]`` is being worked on (what ``embed_files`` says of an item it decoded)."""
        self.current = jobs[index].path
        self._say()

    def encoded(self, inputs: int) -> None:
        self.done += inputs
        self._say()

    def finished(self, path: str, inputs: int) -> None:
        """The file ``path`` is done: it took ``inputs`` (0 when it failed)."""
        self.total += inputs - self.planned.pop(path, inputs)
        self._say()

    def _say(self) -> None:
        if self.report is not None:
            # A failed file's inputs were counted as done and not as planned: done never passes total.
            finished = not self.planned
            done = self.total if finished else min(self.done, self.total)
            self.report(done, self.total, current=None if finished else self.current)


class _Counting:
    """An encoder that tells the tally how many inputs each of its calls encoded, so that the display
    moves through a long recording's windows too; everything else is the encoder's own."""

    def __init__(self, encoder: Any, tally: _Tally) -> None:
        self._encoder, self._tally = encoder, tally

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, modality: str, batch: Any) -> Any:
        out = self._encoder.encode(modality, batch)
        self._tally.encoded(len(out))
        return out


__all__ = ["ingest"]
