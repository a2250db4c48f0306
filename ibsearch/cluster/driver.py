"""The driver of a cluster ingest: plan here, run the pipeline on Ray, write and merge the shards."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import MediaError, UsageError
from ..ingest.commit import Committer, IngestSummary, Job
from ..ingest.run import Selection, changed_since_hashed, ingest_run, plan_run
from ..library import LibraryResources
from ..progress import FILES, Progress, start
from ..transfer import ImportCommitter

#: Files per shard, or seconds between shards, whichever comes first (``IBSEARCH_RAY_SHARD_FILES``
#: sets the first: smaller shards lose less work when the driver dies, larger ones commit less often).
SHARD_FILES = 256
SHARD_SECONDS = 30.0
ENV_SHARD_FILES = "IBSEARCH_RAY_SHARD_FILES"


@dataclass(frozen=True)
class Cluster:
    """Where a cluster ingest runs and how the workers see the files."""

    address: str | None = None  # a Ray cluster's GCS ("head:6379", "auto"); None: RAY_ADDRESS or local
    path_map: tuple[tuple[str, str], ...] = ()  # (local prefix, prefix on the workers)
    actors: int | None = None  # embedding actors (default: one per GPU, else one)
    local_cpus: int | None = None  # CPUs of a local runtime started here (default: all)
    extra_env: dict[str, str] = field(default_factory=dict)  # environment of the workers


def parse_path_map(specs: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``LOCAL=REMOTE`` strings -> prefix pairs; a malformed one is a :class:`UsageError`."""
    pairs = []
    for spec in specs:
        local, sep, remote = spec.partition("=")
        if not sep or not local.strip() or not remote.strip():
            raise UsageError(f"--path-map {spec!r}: write LOCAL=REMOTE, e.g. /mnt/photos=/data/photos")
        pairs.append((os.path.abspath(os.path.expanduser(local.strip())), remote.strip().rstrip("/") or "/"))
    return tuple(pairs)


def remote_path(path: str, path_map: tuple[tuple[str, str], ...]) -> str:
    """``path`` as the workers see it: the longest matching local prefix replaced."""
    for local, remote in sorted(path_map, key=lambda pair: -len(pair[0])):
        if path == local or path.startswith(local.rstrip("/") + "/"):
            return remote + path[len(local.rstrip("/")) :]
    return path


def ingest_on_ray(
    lib: LibraryResources,
    paths: Iterable[str],
    cluster: Cluster | None = None,
    selection: Selection | None = None,
    *,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> IngestSummary:
    """:func:`ibsearch.ingest.ingest`, with the model run by a Ray Data pipeline (see the package docs).

    Bad files are reported in the summary like a local ingest's; a worker or an actor that dies has
    its rows retried by Ray. Holds the library's write lock for the whole run.
    """
    from .ray_runtime import preflight
    from .shard_files import merge_shards

    cluster = cluster or Cluster()
    preflight(cluster.address)  # a wrong address fails now, not after the plan
    with ingest_run(lib, ImportCommitter) as (summary, committer):
        summary.failed += merge_shards(lib, committer)  # what a killed run computed: merged, not redone
        # Its shards hold no passages: notes get theirs from the next local ingest, not from every run.
        jobs = plan_run(lib, paths, selection or Selection(), summary, committer, passages=False)
        committer.flush()
        if jobs:
            _run(lib, jobs, committer, summary, cluster, batch_size or 16, progress)
    return summary


def _run(
    lib: LibraryResources,
    jobs: list[Job],
    committer: Committer,
    summary: IngestSummary,
    cluster: Cluster,
    batch_size: int,
    progress: Progress | None,
) -> None:
    from ..encoder.work import MediaItem, prepare
    from .collect import Collector
    from .pipeline import Placement, results
    from .ray_runtime import connect

    items = []
    for job in jobs:
        assert job.kind is not None  # detected by the planner
        items.append(MediaItem(job.path, job.kind))
    works = prepare(items)
    gpus = connect(cluster.address, cluster.local_cpus, cluster.extra_env)
    import torch

    threads, precision = torch.get_num_threads(), lib.run_precision()
    placement = Placement(lib.model_spec, lib.checkpoint, lib.device, precision, batch_size, threads)
    collector = Collector(works, batch_size, lambda path: remote_path(path, cluster.path_map))
    actors = cluster.actors or max(1, int(gpus))
    done = start(progress, "ingest on ray", FILES)
    failed = start(progress, "failed files", FILES)
    shard: list[Job] = []
    last = time.monotonic()
    per_shard = int(os.environ.get(ENV_SHARD_FILES, "") or SHARD_FILES)
    for result in results(collector.rows, placement, actors, 1.0 if gpus else 0.0):
        for index, outcome in collector.take(result):
            job = jobs[index]
            _settle(job, outcome, summary)
            shard.append(job)
            if done is not None:
                done(collector.reported, len(works))
            if failed is not None and job.error is not None:
                failed(sum(1 for j in jobs if j.error is not None), None)
        if shard and (len(shard) >= per_shard or time.monotonic() - last > SHARD_SECONDS):
            _merge(lib, shard, committer, summary)
            shard, last = [], time.monotonic()
    if shard:
        _merge(lib, shard, committer, summary)


def _settle(job: Job, outcome: object, summary: IngestSummary) -> None:
    """Put a file's outcome on its job (a file that changed meanwhile is left for the next run)."""
    if isinstance(outcome, MediaError):
        job.error, job.transient = outcome.reason, outcome.transient
        return
    summary.encoded += outcome.encoded  # type: ignore[attr-defined]
    if changed_since_hashed(job):
        job.error, job.transient = "the file changed while it was being ingested; the next run takes it", True
        return
    job.modalities, job.info = outcome.modalities, outcome.info  # type: ignore[attr-defined]
    job.vectors, job.spans = outcome.vectors, outcome.spans  # type: ignore[attr-defined]


def _merge(lib: LibraryResources, jobs: list[Job], committer: Committer, summary: IngestSummary) -> None:
    """Commit the failed jobs' error rows, write the others' vectors as a shard, then merge it as an
    import: the shard is the record of that work until it is merged."""
    from .shard_files import merge_shard, write_shard

    for job in jobs:
        if job.error is not None:
            committer.add(job)
    committer.flush()
    shard = write_shard(lib, [job for job in jobs if job.error is None])
    if shard is not None:
        summary.failed += merge_shard(lib, shard, committer)


__all__ = ["Cluster", "ingest_on_ray", "parse_path_map", "remote_path"]
