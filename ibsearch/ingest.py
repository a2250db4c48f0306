"""``ibsearch ingest``: walk, skip the unchanged, reuse the renamed, encode the rest, commit in batches.

Order of work for each run:

1. walk the given paths; a file whose size and mtime match the database costs that one stat;
2. a changed or new file is hashed; same content as a stored file (a rename, a copy, a touched file)
   reuses the stored vectors without running the model;
3. everything else is decoded in worker processes and encoded in model batches, tower by tower;
4. finished files are committed to SQLite in batches (each file with all its vectors atomically), then
   added to the in-memory FAISS indexes, which are saved when the run ends. A killed run loses at most
   the uncommitted batch; the next open brings the index files up to date from the database.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .detect import KIND_MODALITIES, VIDEO, detect
from .errors import IbsearchError, MediaError
from .modality import (
    AUDIO,
    DEPTH,
    IMU,
    INDEX_KEYS,
    MODALITIES,
    TEXT,
    THERMAL,
    VISION,
    modality_of_key,
    segments_key,
)
from .store import hash_file
from .walk import FoundFile, WalkOptions, walk

if TYPE_CHECKING:
    from .engine import Library

log = logging.getLogger(__name__)

#: Bumped whenever preprocessing changes what a vector means; vectors of an older version are not reused.
PREPROCESS_VERSION = "ref-53680b0.1"
COMMIT_EVERY = 32  # files per database transaction
COMMIT_SECONDS = 5.0  # ...or this often, whichever comes first
PARALLEL_MIN_ITEMS = 24  # below this many files to decode, worker start-up costs more than it saves


@dataclass
class IngestSummary:
    """What one ingest did. ``encoded`` counts vectors the model computed in this run."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0  # files that are not media ibsearch reads (e.g. .py, .DS_Store)
    encoded: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "failed": list(self.failed),
            "encoded": self.encoded,
            "skipped": self.skipped,
        }


@dataclass
class _Job:
    """A file to encode, and what has been computed for it so far."""

    path: str
    st: os.stat_result
    kind: str
    modalities: tuple[str, ...]
    content_hash: str
    existed: bool
    info: dict[str, Any] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # index key -> (n, dim)
    spans: dict[str, list[tuple[float | None, float | None]]] = field(default_factory=dict)
    error: str | None = None
    # modality -> "copy" (short media: the file vector is its one segment), "stream" (segments from a
    # streaming pass) or "long" (that pass also gives the file-level vector); see _plan_segments.
    segment_modes: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        if self.error is not None:
            return True
        if not all(m in self.vectors for m in self.modalities):
            return False
        streamed = [m for m, mode in self.segment_modes.items() if mode in ("stream", "long")]
        return all(segments_key(m) in self.vectors for m in streamed)

    def put(self, key: str, vectors: np.ndarray, spans: list[tuple[float | None, float | None]]) -> None:
        self.vectors[key] = vectors
        self.spans[key] = spans


class _Committer:
    """Buffers finished files and writes them in batches: one transaction, then the indexes."""

    def __init__(self, lib: Library, summary: IngestSummary) -> None:
        self.lib = lib
        self.summary = summary
        self.buffer: list[_Job] = []
        self.last = time.monotonic()

    def add(self, job: _Job) -> None:
        self.buffer.append(job)
        if len(self.buffer) >= COMMIT_EVERY or time.monotonic() - self.last > COMMIT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        store = self.lib.store
        added: dict[str, tuple[list[int], list[np.ndarray]]] = {}
        removed: list[int] = []
        # Load (or build) the indexes before committing: an index first built from the database
        # after the commit would already hold this batch, and adding it again would duplicate it.
        for m in {m for job in self.buffer for m in job.vectors}:
            self.lib.index(m)
        with store.transaction():
            for job in self.buffer:
                if job.error is not None:
                    store.record_error(job.path, job.error, size=job.st.st_size, mtime_ns=job.st.st_mtime_ns)
                    continue
                keys = [k for k in INDEX_KEYS if k in job.vectors]
                vectors = np.concatenate([job.vectors[k] for k in keys])
                rows = [k for k in keys for _ in range(len(job.vectors[k]))]
                spans = [span for k in keys for span in job.spans[k]]
                result = store.upsert_file(
                    job.path,
                    size=job.st.st_size,
                    mtime_ns=job.st.st_mtime_ns,
                    content_hash=job.content_hash,
                    modality=job.modalities[0],
                    vectors=vectors,
                    vector_modalities=rows,
                    segments=spans,
                    info=job.info,
                    preprocess_version=PREPROCESS_VERSION,
                )
                removed += result.removed_ids
                for vid, m, vec in zip(result.vector_ids, rows, vectors, strict=True):
                    ids, vecs = added.setdefault(m, ([], []))
                    ids.append(vid)
                    vecs.append(vec)
                if job.existed:
                    self.summary.updated += 1
                else:
                    self.summary.added += 1
        self.lib.remove_vectors(removed)
        for m, (ids, vecs) in added.items():
            self.lib.add_vectors(m, ids, np.stack(vecs))
        for job in self.buffer:
            if job.error is not None:
                self.summary.failed.append({"path": job.path, "reason": job.error})
        self.buffer.clear()
        self.last = time.monotonic()


def _read_text(path: str) -> str:
    """A text file's content for the text tower (only its first 77 tokens count; see README)."""
    with open(path, "rb") as fh:
        raw = fh.read(64 * 1024)  # far more than 77 tokens
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(raw) - 3:
            raise MediaError(path, f"not UTF-8 text (byte {exc.start})") from None
        text = raw[: exc.start].decode("utf-8-sig")
    if not text.strip():
        raise MediaError(path, "the text file is empty")
    return text


def ingest(
    lib: Library,
    paths: Iterable[str],
    *,
    hidden: bool = False,
    exclude: Iterable[str] = (),
    workers: int | None = None,
    batch_size: int | None = None,
    progress: bool | Callable[[int, int], None] = False,
    as_kind: str | None = None,
) -> IngestSummary:
    """Bring the library up to date with ``paths`` (files or folders); see the module docs.

    ``workers``: decoding processes (None: automatic, 0: in this process). ``batch_size``: items per
    model call. ``progress``: True for a bar on stderr, or a callable ``(done, total)``. ``as_kind``
    (``thermal``, ``depth``, ``imu``...): index the files under ``paths`` as that modality; the
    choice is remembered for these folders in later runs.
    Bad files are recorded and listed in ``failed``; they never raise.
    """
    summary = IngestSummary()
    roots = [os.path.abspath(os.fsdecode(p)) for p in paths]
    lib.bind_model()
    store = lib.store
    known = {}
    for root in roots:
        known.update(store.files_under(root))
    bad_before = {e.path: e for e in store.errors()}
    rules: dict[str, str] = dict(store.get_setting(AS_RULES, {}))
    if as_kind is not None:
        for root in roots:
            rules[root] = as_kind
        store.set_setting(AS_RULES, rules)
    options = WalkOptions(hidden=hidden, exclude=list(exclude))
    committer = _Committer(lib, summary)
    jobs: list[_Job] = []
    seen: set[str] = set()

    def fail(found: FoundFile, reason: str) -> None:
        committer.add(_Job(found.path, found.st, "", (), "", found.path in known, error=reason))

    for found in walk(roots, options):
        path, st = found.path, found.st
        seen.add(path)
        rec = known.get(path)
        forced = _forced_kind(rules, path)
        if rec is not None and forced is not None and rec.modality not in KIND_MODALITIES[forced]:
            rec = replace(rec, content_hash="")  # declared another modality with --as: encode again
        elif rec is not None and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns:
            summary.unchanged += 1
            continue
        old_error = bad_before.get(path)
        if old_error is not None and (old_error.size, old_error.mtime_ns) == (st.st_size, st.st_mtime_ns):
            summary.failed.append({"path": path, "reason": old_error.reason})  # known bad, not retried
            continue
        detection = detect(path, st.st_size, forced=forced)
        if detection.kind is None:
            if detection.reason:
                fail(found, detection.reason)
            else:
                summary.skipped += 1
            continue
        modalities = KIND_MODALITIES[detection.kind]
        try:
            content_hash = hash_file(path)
        except OSError as exc:
            fail(found, f"cannot read: {exc.strerror or exc}")
            continue
        if rec is not None and rec.content_hash == content_hash:
            store.update_stat(path, size=st.st_size, mtime_ns=st.st_mtime_ns)  # touched, not changed
            summary.unchanged += 1
            continue
        job = _Job(path, st, detection.kind, modalities, content_hash, existed=rec is not None)
        if _reuse(store, job):
            committer.add(job)
            continue
        jobs.append(job)

    gone = [p for p in known if p not in seen]
    if gone:
        lib.remove_vectors(store.delete_files(gone))
        summary.removed = len(gone)

    _encode_jobs(lib, jobs, committer, summary, workers=workers, batch_size=batch_size, progress=progress)
    committer.flush()
    return summary


AS_RULES = "ingest_as"  # setting: {folder or file: media kind} from ``ingest --as``


def _forced_kind(rules: dict[str, str], path: str) -> str | None:
    """The kind chosen with ``--as`` for ``path`` (the most specific remembered folder wins)."""
    best, kind = -1, None
    for root, forced in rules.items():
        if (path == root or path.startswith(root.rstrip(os.sep) + os.sep)) and len(root) > best:
            best, kind = len(root), forced
    return kind


def _reuse(store: Any, job: _Job) -> bool:
    """Take the vectors of a stored file with the same content (rename or copy): no model run."""
    found = store.find_by_hash(job.content_hash)
    if found is None:
        return False
    record, vectors = found
    if any(v.preprocess_version != PREPROCESS_VERSION for v in vectors):
        return False
    by_key: dict[str, list[Any]] = {}
    for v in vectors:
        by_key.setdefault(v.modality, []).append(v)
    if {k for k in by_key if modality_of_key(k) == k} != set(job.modalities):
        return False
    for key, rows in by_key.items():
        job.put(key, np.stack([v.vector for v in rows]), [(v.start, v.end) for v in rows])
    job.info = dict(record.info)
    return True


def _encode_jobs(
    lib: Library,
    jobs: list[_Job],
    committer: _Committer,
    summary: IngestSummary,
    *,
    workers: int | None,
    batch_size: int | None,
    progress: bool | Callable[[int, int], None],
) -> None:
    if not jobs:
        return
    from .encoder import preprocess
    from .encoder.probe import probe

    total = len(jobs)
    bar = _progress(progress, total)
    finished = 0

    def finish(job: _Job) -> None:
        nonlocal finished
        committer.add(job)
        finished += 1
        bar(finished)

    encoder = lib.encoder(batch_size)
    order = sorted({m for job in jobs for m in job.modalities}, key=_tower_order)
    for job in jobs:
        job.info = probe(job.path, job.kind)
        _plan_segments(job)
    for modality in order:
        todo = [job for job in jobs if modality in job.modalities and job.error is None]
        todo = [job for job in todo if job.segment_modes.get(modality) != "long"]  # done while streaming
        if not todo:
            continue
        if modality == TEXT:
            _encode_text(encoder, todo, summary)
            for job in todo:
                if job.done:
                    finish(job)
            continue
        n_workers = workers if workers is not None else _default_workers(encoder.device.type, len(todo))
        # One batch per input shape: images (3, 224, 224) and videos (15, 3, 2, 224, 224) are both vision.
        batches: dict[tuple[int, ...], list[tuple[_Job, Any]]] = {}
        size = encoder.batch_size
        items = [(job.kind, job.path) for job in todo]
        results = preprocess.load_parallel(modality, items, workers=n_workers, loader=load_file)
        for index, result in results:
            job = todo[index]
            if isinstance(result, IbsearchError):
                job.error = result.reason if isinstance(result, MediaError) else str(result)
                finish(job)
                continue
            batch = batches.setdefault(tuple(result.shape), [])
            batch.append((job, result))
            if len(batch) >= size:
                _run_batch(encoder, modality, batch, summary, finish)
                batch.clear()
        for batch in batches.values():
            if batch:
                _run_batch(encoder, modality, batch, summary, finish)
    for job in jobs:
        streamed = [m for m, mode in job.segment_modes.items() if mode in ("stream", "long")]
        for modality in streamed:
            if job.error is None:
                _encode_segments(encoder, job, modality, summary)
        if streamed:
            finish(job)


def load_file(modality: str, item: tuple[str, str]) -> Any:
    """Worker-side loader: one ``(media kind, path)`` as the input of ``modality``'s tower."""
    from .encoder import preprocess

    kind, path = item
    if kind == VIDEO and modality == VISION:
        from .encoder import video

        return video.load_video(path)
    if modality in (DEPTH, THERMAL, IMU):
        from .encoder import sensors

        return getattr(sensors, f"load_{modality}")(path)
    return preprocess.load(modality, path)


def _plan_segments(job: _Job) -> None:
    """Decide how ``job``'s sound (audio files, video sound tracks) and video pictures are cut into
    timestamped segments (see ``encoder.segments``)."""
    from .encoder import segments

    if job.kind == VIDEO and job.info.get("has_audio") is False:
        job.modalities = (VISION,)  # a video without sound: a picture vector only
    duration = float(job.info.get("duration") or 0.0)  # unknown: treated as short (one segment)
    short = duration < segments.MIN_SEGMENTED_SECONDS
    if AUDIO in job.modalities:
        if short:
            job.segment_modes[AUDIO] = "copy"
        elif duration <= segments.STREAM_SECONDS:
            job.segment_modes[AUDIO] = "stream"
        else:
            job.segment_modes[AUDIO] = "long"
    if job.kind == VIDEO and VISION in job.modalities:
        # The file-level picture vector already streams (only the frames it needs are decoded).
        job.segment_modes[VISION] = "copy" if short else "stream"


def _encode_segments(encoder: Any, job: _Job, modality: str, summary: IngestSummary) -> None:
    """Stream ``job``'s media once: segment vectors of ``modality`` (and, for long audio, the
    file-level vector, computed from the clip windows in the same pass)."""
    import torch

    from .encoder import segments, video

    vectors: list[np.ndarray] = []
    spans: list[tuple[float | None, float | None]] = []
    batch: list[Any] = []

    def flush() -> None:
        if batch:
            inputs = torch.stack([seg.features if modality == AUDIO else seg.pictures for seg in batch])
            out = encoder.encode(modality, inputs)
            summary.encoded += len(out)
            vectors.extend(out)
            spans.extend((round(seg.start, 3), round(seg.end, 3)) for seg in batch)
            batch.clear()

    try:
        if modality == AUDIO and job.segment_modes[AUDIO] == "long":
            whole = segments.long_file_features(job.path, float(job.info["duration"]))
            vec = encoder.encode(AUDIO, whole[None])
            summary.encoded += 1
            job.put(AUDIO, vec, [(None, None)])
        stream = segments.stream_segments(job.path) if modality == AUDIO else video.video_segments(job.path)
        for seg in stream:
            batch.append(seg)
            if len(batch) >= encoder.batch_size:
                flush()
        flush()
    except MediaError as exc:
        job.error = exc.reason
        return
    if not vectors:
        vectors = list(job.vectors[modality])
        spans = [(0.0, job.info.get("duration"))]
    stacked = np.stack(vectors)
    if not np.isfinite(stacked).all():
        job.error = f"the model produced non-finite {modality} segment vectors (silent or corrupt input?)"
        return
    job.put(segments_key(modality), stacked, spans)


def _default_workers(device: str, items: int) -> int:
    """Decoding processes when the user did not say: enough to keep the model fed, never idle cores.

    On a GPU the CPU cores are free for decoding. On a CPU the model already uses every core, so
    workers only pay off with cores to spare (from 4 up, half of them); with few files their start-up
    costs more than it saves.
    """
    cores = os.cpu_count() or 1
    if items < PARALLEL_MIN_ITEMS:
        return 0
    if device == "cuda":
        return max(1, min(cores - 1, 8))
    return min(cores // 2, 8) if cores >= 4 else 0


def _tower_order(modality: str) -> int:
    return MODALITIES.index(modality)


def _run_batch(
    encoder: Any,
    modality: str,
    batch: list[tuple[_Job, Any]],
    summary: IngestSummary,
    finish: Callable[[_Job], None],
) -> None:
    import torch

    vectors = encoder.encode(modality, torch.stack([tensor for _, tensor in batch]))
    summary.encoded += len(vectors)
    for (job, _), vec in zip(batch, vectors, strict=True):
        if not np.isfinite(vec).all():
            job.error = f"the model produced a non-finite {modality} vector (silent or corrupt input?)"
        else:
            job.put(modality, vec[None, :], [(None, None)])
            if job.segment_modes.get(modality) == "copy":
                # Short media: one segment, the whole file (so --segments finds them too).
                job.put(segments_key(modality), vec[None, :], [(0.0, job.info.get("duration"))])
        if job.done:
            finish(job)


def _encode_text(encoder: Any, todo: list[_Job], summary: IngestSummary) -> None:
    from .encoder import preprocess

    texts: list[str] = []
    ok: list[_Job] = []
    for job in todo:
        try:
            texts.append(_read_text(job.path))
            ok.append(job)
        except MediaError as exc:
            job.error = exc.reason
        except OSError as exc:
            job.error = f"cannot read: {exc.strerror or exc}"
    if not ok:
        return
    vectors = encoder.encode(TEXT, preprocess.text(texts))
    summary.encoded += len(vectors)
    for job, vec in zip(ok, vectors, strict=True):
        job.put(TEXT, vec[None, :], [(None, None)])


def _progress(progress: bool | Callable[[int, int], None], total: int) -> Callable[[int], None]:
    if callable(progress):
        report = progress
        return lambda done: report(done, total)
    if not progress:
        return lambda done: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="file", desc="ingest", dynamic_ncols=True, leave=True)

    def update(done: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update
