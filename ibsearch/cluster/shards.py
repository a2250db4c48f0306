"""Results of a cluster ingest on disk: Parquet shards in the library, merged by the single writer.

Finished files are written to ``<library>/cluster-shards/<n>.parquet`` (atomically), then merged into
the database and the indexes; a shard is deleted once merged. A driver killed in between leaves the
shard, and the next run merges it before it plans anything, so that work is never computed twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LibraryError
from ..files import atomic_write
from ..ingest.commit import PREPROCESS_VERSION, Committer, Job
from ..library import Library
from ..modality import INDEX_KEYS, FileKind

FOLDER = "cluster-shards"
_FORMAT = "ibsearch-cluster-shard-1"


def _identity(lib: Library) -> dict[str, str]:
    """What a shard must have been computed with to be merged into ``lib``."""
    return {
        "format": _FORMAT,
        "model_id": lib.model_id,
        "dim": str(lib.dim),
        "preprocess": PREPROCESS_VERSION,
    }


def shard_folder(lib: Library) -> Path:
    return lib.root / FOLDER


def write_shard(lib: Library, jobs: list[Job]) -> Path:
    """Write the finished ``jobs`` (vectors, or errors) as the next shard; returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    for job in jobs:
        common = {
            "path": os.fsencode(job.path), "size": job.st.st_size, "mtime_ns": job.st.st_mtime_ns,
            "hash": job.content_hash, "kind": str(job.kind or ""), "error": job.error,
            "file_modality": (job.modalities or ("",))[0], "transient": job.transient,
            "metadata": json.dumps(job.info, sort_keys=True),
        }  # fmt: skip
        keys = [k for k in INDEX_KEYS if k in job.vectors] if job.error is None else [None]
        for key in keys:
            vectors = job.vectors[key] if key else [None]
            spans = job.spans[key] if key else [(None, None)]
            for vec, (start, end) in zip(vectors, spans, strict=True):
                for name, value in common.items():
                    rows[name].append(value)
                rows["modality"].append(key)
                rows["start"].append(start)
                rows["end"].append(end)
                rows["vector"].append(None if vec is None else np.asarray(vec, dtype=np.float32).tolist())
    meta = _identity(lib)
    table = pa.table(rows).replace_schema_metadata({k.encode(): v.encode() for k, v in meta.items()})
    folder = shard_folder(lib)
    folder.mkdir(exist_ok=True)
    number = 1 + max((int(p.stem) for p in folder.glob("*.parquet") if p.stem.isdigit()), default=0)
    target = folder / f"{number:06d}.parquet"
    atomic_write(target, lambda fh: pq.write_table(table, fh))
    return target


_COLUMNS = ("path", "size", "mtime_ns", "hash", "kind", "file_modality", "metadata", "error", "transient",
            "modality", "start", "end", "vector")  # fmt: skip


def read_shard(lib: Library, path: Path) -> list[Job]:
    """The jobs of a shard; a shard of another model, dimension or preprocessing is refused."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    expected = _identity(lib)
    if meta != expected:
        raise LibraryError(
            f"cluster shard {str(path)!r} was written by another model or version ({meta}); this library "
            f"expects {expected}. Move it away, or ingest with the model it was made with."
        )
    jobs: dict[str, Job] = {}
    for row in table.to_pylist():
        name = os.fsdecode(row["path"])
        job = jobs.get(name)
        if job is None:
            job = jobs[name] = _job(name, row)
        if row["modality"] is not None:
            vec = np.asarray(row["vector"], dtype=np.float32)[None, :]
            key = row["modality"]
            job.vectors[key] = vec if key not in job.vectors else np.concatenate([job.vectors[key], vec])
            job.spans.setdefault(key, []).append((row["start"], row["end"]))
    return list(jobs.values())


def _job(path: str, row: dict[str, Any]) -> Job:
    st = _Stat(row["size"], row["mtime_ns"])
    kind = FileKind(row["kind"]) if row["kind"] else None
    job = Job(path, st, kind, row["hash"], existed=False, error=row["error"])  # type: ignore[arg-type]
    job.transient = bool(row["transient"])
    job.info = json.loads(row["metadata"])
    if row["file_modality"]:
        job.modalities = (row["file_modality"],)
    return job


class _Stat:
    """The two fields of a stat that a job stores."""

    def __init__(self, size: int, mtime_ns: int) -> None:
        self.st_size, self.st_mtime_ns = size, mtime_ns


def merge_shard(lib: Library, path: Path, committer: Committer) -> int:
    """Commit the files of one shard (database, then indexes), then delete it; returns the files."""
    jobs = read_shard(lib, path)
    for job in jobs:
        job.existed = lib.store.get_file(job.path) is not None
        committer.add(job)
    committer.flush()
    path.unlink()
    return len(jobs)


def merge_shards(lib: Library, committer: Committer) -> int:
    """Merge every shard left in the library, in the order they were written; returns the files."""
    folder = shard_folder(lib)
    if not folder.is_dir():
        return 0
    return sum(merge_shard(lib, path, committer) for path in sorted(folder.glob("*.parquet")))


__all__ = ["FOLDER", "merge_shard", "merge_shards", "read_shard", "shard_folder", "write_shard"]
