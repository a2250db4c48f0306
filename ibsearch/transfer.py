"""``ibsearch import`` and ``export``: vectors in and out of a library, as Parquet shards (:mod:`.shards`).

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

Export writes every vector with its file's path, media info, size, mtime and hash, in file order, so
``export`` then ``import`` into another library gives the same hits for the same queries.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import UsageError, out_of_space
from .files import hash_file, path_fields
from .ingest.commit import PREPROCESS_VERSION, TEXT_SEGMENTS, Committer, IngestSummary, Job
from .library import Library
from .modality import INDEX_KEYS, MODALITIES, FileKind, modality_of_key, segments_key
from .progress import Progress, start
from .shards import BATCH_ROWS, FileRows, ShardReader, ShardRow, ShardWriter
from .store import FileEntry, VectorEntry, Verified

UNKNOWN_VERSION = "unknown"  # stored for vectors whose shard names no preprocessing
FORMATS = ("parquet", "npy")


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
    lib: Library, shards: list[str], *, progress: Progress | None = None, batch_rows: int = BATCH_ROWS
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
    lib: Library,
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


def _job(lib: Library, group: FileRows, version: str) -> ImportJob | None:
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
    with a row of each index key, the first with metadata and one of each preprocessing)."""
    keys = {r.modality for r in rows}
    whole = tuple(m for m in MODALITIES if m in keys) or (modality_of_key(next(iter(keys))),)
    info = next((r.metadata for r in rows if r.metadata is not None), {})
    versions = {r.preprocess_version for r in rows if r.preprocess_version}
    return whole, dict(info), versions.pop() if len(versions) == 1 else version


def _store_parts(
    lib: Library, committer: Committer, group: FileRows, version: str, read_here: bool
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


# ---------------------------------------------------------------------------------------------- export


@dataclass
class ExportSummary:
    """What one export wrote."""

    rows: int = 0
    files: int = 0
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "files": self.files, "outputs": self.outputs}


def export_vectors(
    lib: Library, output: str, *, format: str = "parquet", progress: Progress | None = None
) -> ExportSummary:
    """Write every vector of the library with its file to ``output`` (a Parquet shard that
    ``import_vectors`` reads back), or with ``format="npy"`` to ``output`` (a ``(n, dim)`` float32
    array) plus ``<output stem>.jsonl`` (one row per vector, in the same order, the shard's other
    columns) and ``<output stem>.json`` (model, dimension, preprocessing, rows)."""
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}; use parquet or npy")
    store = lib.store
    summary = ExportSummary()
    report = start(progress, "export", "vector")
    model_id, dim = store.model_id or lib.model_id, store.dim or lib.dim
    with store.snapshot():
        # Shards hold no passages (see shard_rows): a note's passages are computed again by an ingest.
        total = store.vectors.count() - store.vectors.counts().get(TEXT_SEGMENTS, 0)
        sink: _NpySink | ShardWriter = (
            _NpySink(output, total, dim)
            if format == "npy"
            else ShardWriter(output, model_id=model_id, dim=dim, preprocess_version=PREPROCESS_VERSION)
        )
        files: set[int] = set()
        with sink:
            for rows, vectors, versions in store.vectors.chunks_with_files(leave_out=TEXT_SEGMENTS):
                sink.write([_shard_row(r, v) for r, v in zip(rows, versions, strict=True)], vectors)
                files.update(r.file_id for r in rows)
                summary.rows += len(rows)
                if report is not None:
                    report(summary.rows, total)
    summary.files = len(files)
    summary.outputs = [output]
    if isinstance(sink, _NpySink):
        summary.outputs = sink.finish(model_id, dim, summary.rows)
    return summary


def _shard_row(row: Any, version: str) -> ShardRow:
    return ShardRow(row.path, row.modality, row.start, row.end, row.info, row.size, row.mtime_ns,
                    row.content_hash, None if version == PREPROCESS_VERSION else version)  # fmt: skip


class _NpySink:
    """Writes an ``.npy`` export: the vectors array, a JSON-lines file of rows, a manifest."""

    def __init__(self, output: str, total: int, dim: int) -> None:
        self.output = output
        stem = output[:-4] if output.endswith(".npy") else output
        self.rows_path, self.manifest_path = stem + ".jsonl", stem + ".json"
        self.parts = (output + ".part", self.rows_path + ".part")
        try:
            self.array = np.lib.format.open_memmap(self.parts[0], "w+", np.float32, (total, dim))
            # The array is written through a memory map: a page the disk has no room for kills the
            # process (SIGBUS) instead of raising, so its blocks are reserved first.
            with open(self.parts[0], "r+b") as fh:
                os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        except OSError as exc:
            self._discard()
            full = out_of_space(exc, os.path.dirname(os.path.abspath(output)))
            if full is None:
                raise
            raise full from None
        self.rows = open(self.parts[1], "w", encoding="utf-8")
        self.done = 0

    def write(self, rows: list[ShardRow], vectors: np.ndarray) -> None:
        self.array[self.done : self.done + len(rows)] = vectors
        self.done += len(rows)
        for r in rows:
            fields = {**path_fields(r.path), "modality": r.modality, "start": r.start, "end": r.end,
                      "metadata": r.metadata, "size": r.size, "mtime_ns": r.mtime_ns, "hash": r.hash,
                      "preprocess_version": r.preprocess_version or PREPROCESS_VERSION}  # fmt: skip
            self.rows.write(json.dumps(fields, sort_keys=True) + "\n")

    def __enter__(self) -> _NpySink:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.array.flush()
        del self.array
        self.rows.close()
        if exc_type is None:
            os.replace(self.parts[0], self.output)
            os.replace(self.parts[1], self.rows_path)
        else:  # a failed export leaves nothing half written behind
            self._discard()

    def _discard(self) -> None:
        for path in self.parts:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def finish(self, model_id: str, dim: int, rows: int) -> list[str]:
        """Write the manifest; returns the three files written."""
        data = {"format": "ibsearch-npy-1", "model_id": model_id, "dim": dim, "rows": rows,
                "preprocess_version": PREPROCESS_VERSION, "vectors": os.path.basename(self.output),
                "rows_file": os.path.basename(self.rows_path)}  # fmt: skip
        with open(self.manifest_path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        return [self.output, self.rows_path, self.manifest_path]


__all__ = [
    "ExportSummary",
    "ImportCommitter",
    "ImportJob",
    "ImportSummary",
    "export_vectors",
    "import_shard",
    "import_vectors",
]
