"""The files of an ingest, and how finished ones are written: in batches, database first, then indexes."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..files import path_fields
from ..library import INT8_SETTING, LibraryResources
from ..modality import INDEX_KEYS, TEXT, FileKind, segments_key
from ..store import FileEntry, PassageSpan, VectorEntry, Verified

#: Bumped whenever preprocessing changes what a vector means; vectors of an older version are not reused.
PREPROCESS_VERSION = "ref-53680b0.1"
#: The version of vectors computed with int8 weights (``--precision int8``): approximate, so told apart
#: from full-precision ones; an ingest at fp32, bf16 or fp16 encodes their files again.
INT8_VERSION = PREPROCESS_VERSION + "+int8"
TEXT_SEGMENTS = segments_key(TEXT)  # a text's passages: their rows carry a character span, not seconds
COMMIT_EVERY = 32  # files per database transaction
COMMIT_SECONDS = 5.0  # ...or this often, whichever comes first
COMMIT_VECTORS = 8192  # ...or once the buffered files hold this many vectors (memory stays bounded)

Span = tuple[float | None, float | None]

NO_EXTENSION, FOLDER = "(none)", "(folder)"  # what a file without an extension and a folder count as


def extension_of(path: str) -> str:
    """What ``path`` is counted as in the counts by extension: ``.jpg`` (lower case), ``(none)``,
    or ``(folder)`` for a folder passed over whole (its path ends in the separator). A name's odd
    bytes show as ``\\xNN``, so the counts go to JSON and SQLite as they are."""
    if path.endswith(os.sep):
        return FOLDER
    ext = os.fsencode(os.path.splitext(path)[1].lower()).decode("utf-8", "backslashreplace")
    return ext or NO_EXTENSION


def count_by_extension(paths: Iterable[str]) -> dict[str, int]:
    """How many of ``paths`` have each extension, most first (ties by name)."""
    counts = Counter(extension_of(p) for p in paths)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass
class IngestSummary:
    """What one ingest did. ``encoded`` counts vectors the model computed in this run."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    encoded: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    known_bad: int = 0  # files that failed before and are unchanged since: not tried again
    # What was passed over, with why: not media ibsearch reads (.py, .DS_Store), hidden, excluded...
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    # Files named as paths of the run that were neither indexed nor failed (those are in ``failed``).
    not_indexed: list[dict[str, str]] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.skipped_files)

    def skip(self, path: str, reason: str) -> None:
        """Count ``path`` as passed over for ``reason`` (a folder's path ends in the separator)."""
        self.skipped_files.append({"path": path, "reason": reason})

    def counts(self) -> dict[str, Any]:
        """The run in numbers, with what was skipped and what failed counted by extension."""
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "encoded": self.encoded,
            "skipped": self.skipped,
            "known_bad": self.known_bad,
            "skipped_by_extension": count_by_extension(f["path"] for f in self.skipped_files),
            "failed_by_extension": count_by_extension(f["path"] for f in self.failed),
        }

    def to_dict(self, list_skipped: bool = False) -> dict[str, Any]:
        """The summary as JSON; ``list_skipped`` adds every skipped path with why (``skipped_files``)."""
        listed = lambda rows: [{**path_fields(f["path"]), "reason": f["reason"]} for f in rows]  # noqa: E731
        data = {**self.counts(), "failed": listed(self.failed), "not_indexed": listed(self.not_indexed)}
        if list_skipped:
            data["skipped_files"] = listed(self.skipped_files)
        return data


@dataclass
class Job:
    """A file to store: its stat and content hash, and its vectors (or why it failed)."""

    path: str
    st: os.stat_result
    kind: FileKind | None
    content_hash: str
    existed: bool  # the path was in the library before this run
    modalities: tuple[str, ...] = ()  # file-level modalities; the first names the file's row
    info: dict[str, Any] = field(default_factory=dict)  # media facts (width, duration...)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # index key -> (n, dim)
    spans: dict[str, list[Span]] = field(default_factory=dict)
    passages: list[PassageSpan] = field(default_factory=list)  # of the text.segments rows, in order
    error: str | None = None
    transient: bool = False  # the error is not the file's content (I/O, permission, crash): retry next run
    verified: Verified = Verified.INGEST  # who vouches for content_hash (an import may vouch for less)
    version: str = PREPROCESS_VERSION  # of its vectors: INT8_VERSION when int8 weights computed them


class Committer:
    """Buffers finished files and writes them in batches: one transaction, then the indexes.

    A killed run loses at most the uncommitted batch; the indexes are derived, and the next open
    brings their files up to date from the database.
    """

    def __init__(self, lib: LibraryResources, summary: IngestSummary) -> None:
        self.lib = lib
        self.summary = summary
        self.buffer: list[Job] = []
        self.buffered = 0  # vectors in the buffer
        self.last = time.monotonic()

    def add(self, job: Job) -> None:
        self.buffer.append(job)
        self.buffered += sum(len(v) for v in job.vectors.values())
        if (
            len(self.buffer) >= COMMIT_EVERY
            or self.buffered >= COMMIT_VECTORS
            or time.monotonic() - self.last > COMMIT_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        store, indexes = self.lib.store, self.lib.indexes
        added: dict[str, tuple[list[int], list[np.ndarray]]] = {}
        removed: list[int] = []
        # Load (or build) the indexes before committing: an index first built from the database
        # after the commit would already hold this batch, and adding it again would duplicate it.
        for key in {key for job in self.buffer for key in job.vectors}:
            indexes.prepare(key)
        with store.transaction():
            for job in self.buffer:
                if job.error is not None:
                    # A content failure is remembered with the file's stat, so an unchanged bad file
                    # is not tried again; a transient one without, so the next run retries it.
                    size, mtime = (None, None) if job.transient else (job.st.st_size, job.st.st_mtime_ns)
                    store.errors.record(job.path, job.error, size=size, mtime_ns=mtime)
                    continue
                removed += self._store(job, added)
                if job.existed:
                    self.summary.updated += 1
                else:
                    self.summary.added += 1
        indexes.remove(removed)
        for key, (ids, vecs) in added.items():
            indexes.add(key, ids, np.stack(vecs))
        self.summary.failed += [{"path": job.path, "reason": job.error} for job in self.buffer if job.error]
        self.buffer.clear()
        self.buffered = 0
        self.last = time.monotonic()

    def _store(self, job: Job, added: dict[str, tuple[list[int], list[np.ndarray]]]) -> list[int]:
        """Write one file with all its vectors; note the new ids per key; return the replaced ids."""
        keys = [k for k in INDEX_KEYS if k in job.vectors]
        rows = [
            VectorEntry(vec, k, start, end, job.version, passage)
            for k in keys
            for vec, (start, end), passage in zip(*_columns(job, k), strict=True)
        ]
        st = job.st
        file = FileEntry(
            job.path, st.st_size, st.st_mtime_ns, job.content_hash, job.modalities[0], job.info, job.verified
        )
        note_version(self.lib, job.version)
        result = self.lib.store.upsert_file(file, rows)
        for vid, row in zip(result.vector_ids, rows, strict=True):
            ids, vecs = added.setdefault(row.modality, ([], []))
            ids.append(vid)
            vecs.append(row.vector)
        return result.removed_ids


def _columns(job: Job, key: str) -> tuple[np.ndarray, list[Span], list[PassageSpan | None]]:
    """The vectors of ``key``, their spans and their passages (None but for a text's segments)."""
    vectors = job.vectors[key]
    passages: list[PassageSpan | None] = [*job.passages] if key == TEXT_SEGMENTS else [None] * len(vectors)
    return vectors, job.spans[key], passages


def note_version(lib: LibraryResources, version: str) -> None:
    """Remember in ``lib`` that it holds int8 vectors when ``version`` is theirs (ingest, import, cluster
    shards alike), so that later ingests at "auto" stay at int8 (see ``LibraryResources.run_precision``)."""
    if version == INT8_VERSION and not lib.store.settings.get(INT8_SETTING):
        lib.store.settings.set(INT8_SETTING, True)


def vector_version(precision: str) -> str:
    """The version stored with vectors computed at ``precision`` (a resolved one: "int8", "fp32"...)."""
    return INT8_VERSION if precision == "int8" else PREPROCESS_VERSION


__all__ = [
    "COMMIT_EVERY",
    "INT8_VERSION",
    "PREPROCESS_VERSION",
    "Committer",
    "IngestSummary",
    "Job",
    "note_version",
    "vector_version",
]
