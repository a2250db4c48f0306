"""What an ingest has to do with each file it walks: nothing, reuse stored vectors, or encode it.

A file whose size and mtime match the database costs that one stat. A changed or new file is
hashed: the same content as a stored file (a rename, a copy, a touched file) reuses the stored
vectors without running the model; everything else is left for the encoder. Only hashes computed
from this machine's bytes are matched (an imported shard's hash for a file it names elsewhere is
not), and an imported file that no ingest has read yet is hashed even when its stat is unchanged.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np

from ..encoder.media.detect import detect
from ..encoder.media.probe import probe_dates
from ..encoder.media.taken import file_date
from ..files import hash_file
from ..modality import KIND_MODALITIES, TEXT, FileKind, modality_of_key
from ..store import Store, Verified
from .commit import PREPROCESS_VERSION, TEXT_SEGMENTS, IngestSummary, Job
from .walk import FoundFile

AS_RULES = "ingest_as"  # setting: {folder or file: file kind} from ``ingest --as``
#: The readers' generation: raised whenever ibsearch learns to read more (a file type, an encoding, a
#: container told by its streams). A failure recorded before a library's first ingest under this
#: generation (a HEIC photo once refused as a damaged header) is tried again when next met, unchanged
#: or not; failing again, it is recorded anew and known bad from then on.
READERS_VERSION = 2
READERS_SETTING = "readers"  # setting: {"version": the generation, "since": when it first ran here}


class Planner:
    """Compares walked files with the database, one at a time (see :meth:`visit`).

    ``roots`` are the absolute paths being ingested; ``as_kind`` (``thermal``, ``depth``, ``imu``...)
    makes the files under them that kind, a choice remembered for later runs. ``passages``: a note
    stored without passages (before schema 3, or by a cluster ingest) is encoded again.
    """

    def __init__(
        self, store: Store, roots: list[str], as_kind: str | None = None, *, passages: bool = True
    ) -> None:
        self.store = store
        self.passages = passages
        self.roots = roots
        self.known = {}
        for root in roots:
            self.known.update(store.files.under(root))
        self.bad_before = {e.path: e for e in store.errors.latest()}
        readers = store.settings.get(READERS_SETTING) or {}
        self.new_readers = readers.get("version") != READERS_VERSION
        self.readers_since = time.time() if self.new_readers else float(readers.get("since", 0.0))
        self.rules: dict[str, str] = dict(store.settings.get(AS_RULES, {}))
        if as_kind is not None:
            for root in roots:
                self.rules[root] = as_kind
            store.settings.set(AS_RULES, self.rules)
        self.seen: set[str] = set()
        self.named = set(roots)  # a file named as a path is always said to be not indexed, with why

    def visit(self, found: FoundFile, summary: IngestSummary) -> Job | None:
        """The job for one walked file, or None when there is nothing to do (counted in ``summary``).

        A job comes back either finished (failed, or with reused vectors) or with ``vectors`` empty,
        to be encoded.
        """
        path, st = found.path, found.st
        self.seen.add(path)
        rec = self.known.get(path)
        forced = self._forced_kind(path)
        if rec is not None and forced is not None and rec.modality not in KIND_MODALITIES[forced]:
            rec = replace(rec, content_hash="")  # declared another modality with --as: encode again
        elif rec is not None and not rec.complete and self.passages:
            rec = replace(rec, content_hash="")  # a note stored before passages existed: encode again
        elif rec is not None and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns:
            if rec.verified == Verified.INGEST:
                summary.unchanged += 1
                if not rec.dated:  # stored before dates were read: its metadata only, no model
                    self._date(found, detect(path, st.st_size, forced=forced).kind)
                return None
            # Imported and never read here: hashed once, so that serving it and reusing its vectors
            # rest on this machine's bytes, not on a shard's word.
        old_error = self.bad_before.get(path)
        # Only content failures carry the stat they happened at; transient ones are always retried.
        if (
            old_error is not None
            and (old_error.size, old_error.mtime_ns) == (st.st_size, st.st_mtime_ns)
            and old_error.time >= self.readers_since  # else recorded by older readers: try again
        ):
            summary.known_bad += 1  # failed before and unchanged since: its reason is in the errors table
            if path in self.named:
                reason = f"it failed before and is unchanged since: {old_error.reason}"
                summary.not_indexed.append({"path": path, "reason": reason})
            return None
        detection = detect(path, st.st_size, forced=forced)
        if detection.kind is None:
            if detection.reason:
                return self._failed(found, detection.reason, transient=detection.transient)
            ext = os.path.splitext(path)[1].lower()
            summary.skip(path, f"not a media type ibsearch reads ({ext or 'no extension'})")
            if path in self.named:
                summary.not_indexed.append(summary.skipped_files[-1])
            return None
        try:
            content_hash = hash_file(path)
        except OSError as exc:
            return self._failed(found, f"cannot read: {exc.strerror or exc}", transient=True)
        if rec is not None and rec.content_hash == content_hash:
            self.store.files.update_stat(
                path, size=st.st_size, mtime_ns=st.st_mtime_ns
            )  # touched, not changed
            self._date(found, detection.kind)  # a date that is its mtime moves with it
            summary.unchanged += 1
            return None
        job = Job(path, st, detection.kind, content_hash, existed=rec is not None)
        self._reuse(job)
        if job.vectors:  # a copy: its twin's vectors and media facts, and a date of its own
            job.info.update(probe_dates(path, detection.kind, st.st_mtime))
        return job

    def gone(self) -> list[str]:
        """Stored paths under the roots that the walk did not see (deleted, or now excluded)."""
        return [p for p in self.known if p not in self.seen]

    def vanished_errors(self) -> list[str]:
        """Paths under the roots with a recorded error that the walk did not see (deleted since)."""
        return [p for p in self.bad_before if p not in self.seen and _under(p, self.roots)]

    def _failed(self, found: FoundFile, reason: str, *, transient: bool = False) -> Job:
        job = Job(found.path, found.st, None, "", found.path in self.known, error=reason)
        job.transient = transient
        return job

    def _date(self, found: FoundFile, kind: FileKind | None) -> None:
        """Read when a stored file was taken (its metadata, else its mtime) into its stored info."""
        mtime = found.st.st_mtime
        facts = file_date(mtime) if kind is None else probe_dates(found.path, kind, mtime)
        self.store.files.merge_info(found.path, facts)

    def _forced_kind(self, path: str) -> FileKind | None:
        """The kind chosen with ``--as`` for ``path`` (the most specific remembered folder wins)."""
        best, kind = -1, None
        for root, forced in self.rules.items():
            if _under(path, [root]) and len(root) > best:
                best, kind = len(root), forced
        return None if kind is None else FileKind(kind)

    def _reuse(self, job: Job) -> None:
        """Take the vectors of a stored file with the same content (rename or copy): no model run."""
        assert job.kind is not None
        found = self.store.find_by_hash(job.content_hash)
        if found is None:
            return
        record, vectors = found
        if any(v.preprocess_version != PREPROCESS_VERSION for v in vectors):
            return
        by_key: dict[str, list[np.ndarray]] = {}
        spans: dict[str, list[tuple[float | None, float | None]]] = {}
        for v in vectors:
            by_key.setdefault(v.modality, []).append(v.vector)
            spans.setdefault(v.modality, []).append((v.start, v.end))
            if v.passage is not None:
                job.passages.append(v.passage)
        whole = tuple(k for k in by_key if modality_of_key(k) == k)
        # Same bytes, same vectors: what the stored copy yielded (a silent video: its picture only)
        # is what this one would, unless --as declared the file another kind (or a note of before
        # passages existed, which has none to give).
        passages = len(by_key.get(TEXT_SEGMENTS, ()))
        if not whole or not set(whole) <= set(KIND_MODALITIES[job.kind]) or passages != len(job.passages):
            job.passages = []
            return
        if TEXT in whole and not passages:
            return
        job.modalities = tuple(m for m in KIND_MODALITIES[job.kind] if m in whole)
        job.vectors = {key: np.stack(rows) for key, rows in by_key.items()}
        job.spans = spans
        job.info = dict(record.info)


def _under(path: str, roots: list[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one of them as a folder."""
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


__all__ = ["AS_RULES", "Planner"]
