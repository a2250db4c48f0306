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

import os
from collections.abc import Iterable

from ..errors import MediaError
from ..library import Library
from ..progress import FILES, Progress, start
from .commit import Committer, IngestSummary, Job
from .plan import Planner
from .walk import WalkOptions, walk


def ingest(
    lib: Library,
    paths: Iterable[str],
    *,
    hidden: bool = False,
    exclude: Iterable[str] = (),
    workers: int | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    as_kind: str | None = None,
) -> IngestSummary:
    """Bring the library up to date with ``paths`` (files or folders); see the module docs.

    ``workers``: decoding processes (None: automatic, 0: in this process). ``batch_size``: items per
    model call. ``progress`` hears about the files encoded (task ``"ingest"``). ``as_kind``
    (``thermal``, ``depth``, ``imu``...): index the files under ``paths`` as that kind; the choice
    is remembered for these folders in later runs. Bad files are recorded and listed in ``failed``;
    they never raise. Holds the library's write lock.
    """
    with lib.writing():
        summary = IngestSummary()
        roots = [os.path.abspath(os.fsdecode(p)) for p in paths]
        lib.bind_model()
        planner = Planner(lib.store, roots, as_kind)
        committer = Committer(lib, summary)
        to_encode: list[Job] = []
        for found in walk(roots, WalkOptions(hidden=hidden, exclude=list(exclude))):
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
        _encode(lib, to_encode, committer, summary, workers, batch_size, progress)
        committer.flush()
        return summary


def _encode(
    lib: Library,
    jobs: list[Job],
    committer: Committer,
    summary: IngestSummary,
    workers: int | None,
    batch_size: int | None,
    progress: Progress | None,
) -> None:
    """Run the model over ``jobs`` and commit each as soon as all its vectors are there."""
    if not jobs:
        return
    from ..encoder.embed import MediaItem, embed_files  # the model is loaded only when needed

    report = start(progress, "ingest", FILES)
    items = []
    for job in jobs:
        assert job.kind is not None  # detected by the planner
        items.append(MediaItem(job.path, job.kind))
    for done, (index, result) in enumerate(embed_files(lib.encoder(batch_size), items, workers=workers), 1):
        job = jobs[index]
        if isinstance(result, MediaError):
            job.error = result.reason
        else:
            summary.encoded += result.encoded
            job.modalities, job.info = result.modalities, result.info
            job.vectors, job.spans = result.vectors, result.spans
        committer.add(job)
        if report is not None:
            report(done, len(jobs))


__all__ = ["IngestSummary", "ingest"]
