"""Results of a cluster ingest on disk: shards in the public Parquet format, merged like an import.

A batch of finished files is written to ``<library>/cluster-shards/<n>.parquet`` with
:class:`~ibsearch.shards.ShardWriter` (the format ``ibsearch import`` reads), then merged into the
database and the indexes through :func:`ibsearch.transfer.import_shard`, the very path of ``ibsearch
import``; a shard is deleted once merged. A driver killed in between leaves the shard, and the next run
merges it before it plans anything, so that work is never computed twice. Files that failed carry no
vectors and are not written to a shard: their error rows are committed at once (should the driver die
first, the next run tries them again).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import LibraryError, UsageError
from ..ingest.commit import Committer, Job, vector_version
from ..library import LibraryResources
from ..modality import INDEX_KEYS
from ..shards import ShardReader, ShardRow, ShardWriter

FOLDER = "cluster-shards"
DAMAGED = "damaged"  # where unreadable shards are set aside, inside FOLDER


def shard_folder(lib: LibraryResources) -> Path:
    return lib.root / FOLDER


def write_shard(lib: LibraryResources, jobs: list[Job]) -> Path | None:
    """Write the vectors of the finished ``jobs`` as the next shard; returns its path (None when no job
    has vectors)."""
    rows: list[ShardRow] = []
    vectors: list[np.ndarray] = []
    for job in jobs:
        for key in (k for k in INDEX_KEYS if k in job.vectors):
            for vec, (start, end) in zip(job.vectors[key], job.spans[key], strict=True):
                rows.append(ShardRow(job.path, key, start, end, job.info, job.st.st_size,
                                     job.st.st_mtime_ns, job.content_hash))  # fmt: skip
                vectors.append(vec)
    if not rows:
        return None
    folder = shard_folder(lib)
    folder.mkdir(exist_ok=True)
    number = 1 + max((int(p.stem) for p in folder.glob("*.parquet") if p.stem.isdigit()), default=0)
    target = folder / f"{number:06d}.parquet"
    version = vector_version(lib.run_precision())  # int8 workers' vectors are told apart, as ingest's
    with ShardWriter(target, model_id=lib.model_id, dim=lib.dim, preprocess_version=version) as w:
        w.write(rows, np.stack(vectors))
    return target


def merge_shard(lib: LibraryResources, path: Path, committer: Committer) -> list[dict[str, str]]:
    """Commit the files of one shard (database, then indexes) as ``ibsearch import`` does, then delete
    it; returns the files the import refused (changed on disk since their vectors were computed).

    A shard that cannot be read (damaged by a crash of its machine, say) is moved to ``damaged/`` beside
    it and reported as a failure: the files it held that were not committed are computed again.
    """
    from ..transfer import import_shard

    try:
        reader = ShardReader(path)
        reader.check(lib.model_id, lib.dim)
        refused = import_shard(lib, reader, committer, read_here=True).failed
    except LibraryError as exc:
        raise LibraryError(
            f"{exc}. It was left by a cluster ingest with another model: move it out of "
            f"{str(shard_folder(lib))!r} (or import it into a library of that model)"
        ) from None
    except (UsageError, OSError, ValueError) as exc:
        committer.flush()  # what was read before the damage is whole files, each checked
        return [{"path": str(path), "reason": _set_aside(path, exc)}]
    committer.flush()
    path.unlink()
    return refused


def _set_aside(path: Path, exc: Exception) -> str:
    """Move a damaged shard out of the way; returns what happened, in words."""
    aside = path.parent / DAMAGED / path.name
    aside.parent.mkdir(exist_ok=True)
    os.replace(path, aside)
    return (
        f"damaged cluster shard ({exc}); moved to {str(aside)!r}, and the files it held that were not "
        "merged are computed again"
    )


def merge_shards(lib: LibraryResources, committer: Committer) -> list[dict[str, str]]:
    """Merge every shard left in the library, in the order they were written; returns the refused files."""
    folder = shard_folder(lib)
    refused: list[dict[str, str]] = []
    if folder.is_dir():
        for part in folder.glob("*.parquet.part"):  # a shard whose writer was killed: never merged
            part.unlink()
        for path in sorted(folder.glob("*.parquet")):
            lib.bind_model()  # a library that a killed first run left with shards only
            refused += merge_shard(lib, path, committer)
    return refused


__all__ = ["FOLDER", "merge_shard", "merge_shards", "shard_folder", "write_shard"]
