"""``ibsearch import``: vectors computed elsewhere into a library, from Parquet shards (:mod:`.shards`;
``export`` is :mod:`.export`).

Import takes ingest's way into the library (:class:`~ibsearch.ingest.commit.Committer`): under the write
lock, finished files are written in batches, one SQLite transaction each (a file with all its vectors),
then added to the indexes, which are saved when the write ends. A killed import keeps every committed
batch; running it again replaces those files with the same rows. Imported files count as ingested: a
file on this machine is stat'ed and hashed (unless the shard's size and mtime say it is unchanged, as
ingest decides) so that a later ``ingest`` of it costs a stat, and a file that no longer is what the
shard says is refused. A shard of another model or dimension is refused whole.

Nothing else in a shard is trusted (:mod:`.shard_rows` checks every row). Each stored file records who
vouches for its hash (:class:`~ibsearch.store.Verified`): a shard's word for a file not on this machine
never lets ingest reuse its vectors for other bytes, and the server sends only files an ingest read.
A file of more rows than a reader's batch is stored a batch at a time in one transaction, so memory
does not grow with a shard's rows.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .encoder.media.taken import file_date
from .errors import UsageError
from .files import hash_file, path_fields
from .ingest.commit import PREPROCESS_VERSION, Committer, IngestSummary, Job
from .library import LibraryResources
from .modality import INDEX_KEYS, MODALITIES, FileKind, modality_of_key, segments_key
from .progress import Progress, start
from .shards import BATCH_ROWS, FileRows, ShardReader, ShardRow
from .store import FileEntry, VectorEntry, Verified

UNKNOWN_VERSION = "unknown"  # stored for vectors whose shard names no preprocessing


@dataclass
class ImportSummary:
    """What one import did (``failed``: files refused, with the reason)."""

    shards: int = 0
    added: int = 0
    updated: int = 0
    vectors: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shards": self.shards,
            "added": self.added,
            "updated": self.updated,
            "vectors": self.vectors,
            "failed": [{**path_fields(f["path"]), "reason": f["reason"]} for f in self.failed],
        }


@dataclass
class ImportJob(Job):
    """A file to store from a shard: ingest's job, plus the preprocessing its vectors were made with."""

    preprocess_version: str = PREPROCESS_VERSION


class ImportCommitter(Committer):
    """Ingest's committer; vectors computed with other preprocessing are tagged so in the same transaction."""

    def _store(self, job: Job, added: dict[str, tuple[list[int], list[np.ndarray]]]) -> list[int]:
        removed = super()._store(job, added)
        if isinstance(job, ImportJob) and job.preprocess_version != PREPROCESS_VERSION:
            self.lib.store.vectors.set_preprocess_version(job.path, job.preprocess_version)
        return removed


def import_vectors(
    lib: LibraryResources,
    shards: list[str],
    *,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ImportSummary:
    """Add the files and vectors of Parquet ``shards`` to the library (see the module docs), reading
    ``batch_rows`` rows at a time.

    Every shard is opened and checked (columns, model, dimension) before anything is written. Raises
    :class:`~ibsearch.errors.UsageError` for a shard that cannot be read or lacks a required column and
    :class:`~ibsearch.errors.LibraryError` for one of another model or dimension. Holds the write lock.
    """
    if not shards:
        raise UsageError("give at least one Parquet shard to import")
    readers = [ShardReader(path, batch_rows=batch_rows) for path in shards]
    for reader in readers:
        reader.check(lib.model_id, lib.dim)
    summary = ImportSummary(shards=len(readers))
    ingested = IngestSummary()
    with lib.writing():
        lib.bind_model()
        committer = ImportCommitter(lib, ingested)
        report = start(progress, "import", "vector")
        total = sum(r.info.rows for r in readers)
        counted = None if report is None else (lambda done: report(done, total))
        for reader in readers:
            import_shard(lib, reader, committer, summary, counted)
        committer.flush()
    summary.added, summary.updated = ingested.added, ingested.updated
    return summary


def import_shard(
    lib: LibraryResources,
    reader: ShardReader,
    committer: Committer,
    summary: ImportSummary | None = None,
    report: Callable[[int], object] | None = None,
    *,
    read_here: bool = False,
) -> ImportSummary:
    """Hand the files of one checked shard to ``committer`` (the caller holds the write lock and flushes);
    refused files go to ``summary.failed``. What ``import_vectors`` and a cluster ingest's merge share
    (``read_here``: the shard holds what this library's own ingest read and hashed, so it counts as
    ingested; see :class:`~ibsearch.store.Verified`)."""
    summary = summary or ImportSummary(shards=1)
    version = reader.info.preprocess_version or UNKNOWN_VERSION
    for group in reader.files(lib.dim):
        if group.parts is not None and group.error is None:
            stored = _store_parts(lib, committer, group, version, read_here)
        else:
            job = None if group.error else _job(lib, group, version)
            if job is not None:
                job.verified = Verified.INGEST if read_here else job.verified
                committer.add(job)
            stored = None if job is None else len(group.rows)
        if stored is None:
            summary.failed.append({"path": group.path, "reason": group.error or "refused"})
            continue
        summary.vectors += stored
        if report is not None:
            report(summary.vectors)
    return summary


def _job(lib: LibraryResources, group: FileRows, version: str) -> ImportJob | None:
    """The job storing one file's rows, or None when the file is refused (its reason set on ``group``)."""
    vectors = group.vectors[0][None, :] if len(group.vectors) == 1 else np.stack(group.vectors)
    order = sorted(range(len(group.rows)), key=lambda i: _row_order(group.rows[i]))
    identity = _identity(group.path, group.rows[0])
    if isinstance(identity, str):
        group.error = identity
        return None
    st, content_hash, verified = identity
    by_key: dict[str, list[np.ndarray]] = {}
    spans: dict[str, list[tuple[float | None, float | None]]] = {}
    for i in order:
        row = group.rows[i]
        by_key.setdefault(row.modality, []).append(vectors[i])
        spans.setdefault(row.modality, []).append((row.start, row.end))
    whole, info, row_version = _file_facts(group.rows, version)
    existed = lib.store.files.get(group.path) is not None
    return ImportJob(group.path, st, _kind(set(by_key)), content_hash, existed, whole, info,
                     {k: np.stack(v) for k, v in by_key.items()}, spans, verified=verified,
                     preprocess_version=row_version)  # fmt: skip


def _file_facts(rows: list[ShardRow], version: str) -> tuple[tuple[str, ...], dict[str, Any], str]:
    """A file's whole-file modalities, media info and preprocessing, from its rows (or a sample of them
    with a row of each index key, the first with metadata and one of each preprocessing). Undated
    metadata is dated by the shard's mtime of the file (else it stays undated: no date filter keeps it)."""
    keys = {r.modality for r in rows}
    whole = tuple(m for m in MODALITIES if m in keys) or (modality_of_key(next(iter(keys))),)
    info = next((r.metadata for r in rows if r.metadata is not None), {})
    mtime_ns = next((r.mtime_ns for r in rows if r.mtime_ns), None)
    if "taken" not in info and mtime_ns is not None:
        info = {**info, **file_date(mtime_ns / 1e9)}
    versions = {r.preprocess_version for r in rows if r.preprocess_version}
    return whole, dict(info), versions.pop() if len(versions) == 1 else version


def _store_parts(
    lib: LibraryResources, committer: Committer, group: FileRows, version: str, read_here: bool
) -> int | None:
    """Store a file of more rows than a reader's batch in one transaction, a batch at a time, then add
    its vectors to the indexes as the database holds them, a chunk at a time (memory stays bounded
    however many rows it has); returns how many, or None when the file is refused (its reason set on
    ``group``). Its rows are stored in shard order (an export writes them in order)."""
    assert group.parts is not None
    # A first pass, so that a refused row stores nothing; it keeps a row of each index key, the first
    # with metadata and one per preprocessing: what the file's own row is made of.
    sample: dict[object, ShardRow] = {}
    for rows, _ in group.parts():
        for row in rows:
            sample.setdefault("first", row)
            sample.setdefault(row.modality, row)
            sample.setdefault(("version", row.preprocess_version), row)
            if row.metadata is not None:
                sample.setdefault("metadata", row)
    first = sample.get("first")
    identity = _identity(group.path, first) if first is not None and group.error is None else None
    if not isinstance(identity, tuple):
        group.error = group.error or identity or "no rows"
        return None
    st, content_hash, verified = identity
    whole, info, row_version = _file_facts(list(sample.values()), version)
    committer.flush()  # the files before it are committed first, in their own transaction
    store, indexes, count = lib.store, lib.indexes, 0
    for key in {r.modality for r in sample.values()}:
        indexes.prepare(key)  # loaded before the commit, as the committer does
    with store.transaction():
        for rows, vectors in group.parts():
            if not count:
                trust = Verified.INGEST if read_here else verified
                file = FileEntry(group.path, st.st_size, st.st_mtime_ns, content_hash, whole[0], info, trust)
                stored = store.upsert_file(file, [])
            entries = [
                VectorEntry(vector, r.modality, r.start, r.end, row_version)
                for r, vector in zip(rows, vectors, strict=True)
            ]
            store.vectors.append(stored.file_id, entries)
            count += len(rows)
    indexes.remove(stored.removed_ids)
    for ids, modalities, vectors in store.vectors.chunks_of_file(stored.file_id):
        for key in set(modalities):
            mask = np.array([m == key for m in modalities])
            indexes.add(key, ids[mask].tolist(), vectors[mask])
    if stored.created:
        committer.summary.added += 1
    else:
        committer.summary.updated += 1
    return count


def _row_order(row: ShardRow) -> tuple[int, float]:
    return INDEX_KEYS.index(row.modality), row.start or 0.0


def _kind(keys: set[str]) -> FileKind:
    """The file kind its vectors say (a picture and a sound, or picture segments: a video)."""
    if segments_key("vision") in keys or {"vision", "audio"} <= keys:
        return FileKind.VIDEO
    modality = next(m for m in MODALITIES if m in {modality_of_key(k) for k in keys})
    return {"vision": FileKind.IMAGE}.get(modality) or FileKind(modality)


def _identity(path: str, row: ShardRow) -> tuple[os.stat_result, str, Verified] | str:
    """``(stat, content hash, who vouches for the hash)`` to store for ``path``, or why it is refused.

    A file on this machine must be the one the shard describes: same size and mtime (then its hash is
    taken from the shard, as ingest would, unchecked), or the same content hash (computed here). Without
    the file, the shard's values are stored as they are (a later ingest of the file then compares with
    them), and its hash is only the shard's word.
    """
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        given = os.stat_result(
            (0o100644, 0, 0, 1, 0, 0, row.size or 0, 0, 0, 0), {"st_mtime_ns": row.mtime_ns or 0}
        )
        return given, row.hash or "", Verified.SHARD
    same_stat = (row.size in (None, st.st_size)) and (row.mtime_ns in (None, st.st_mtime_ns))
    if row.hash and same_stat and row.size is not None and row.mtime_ns is not None:
        return st, row.hash, Verified.SHARD
    if not row.hash and not same_stat:
        return f"{path!r} changed since its vectors were computed (size or mtime differ); ingest it instead"
    try:
        content_hash = hash_file(path)
    except OSError as exc:
        return f"cannot read {path!r} to check it: {exc.strerror or exc}"
    if row.hash and row.hash != content_hash:
        return f"{path!r} is not the file its vectors were computed from (content hash differs); ingest it"
    return st, content_hash, Verified.IMPORT


__all__ = [
    "ImportCommitter",
    "ImportJob",
    "ImportSummary",
    "import_shard",
    "import_vectors",
]
