"""From media to vectors: the one call that ingest, search and every later caller make.

:func:`embed_files` takes files (paths or bytes) with their kind and returns, per file, numpy vectors
with their time spans: one file-level vector per modality the file yields, and for long media the
timestamped segments (see :mod:`.media.audio_segments`). Inside, files are probed and planned into
batches (:mod:`.work`), decoded (in worker processes where cores are spare) and encoded tower by
tower, so only the towers a run needs are loaded; long media are streamed into segments.
:func:`encode_batch` and :func:`encode_segments` are the steps, for callers that distribute them (a
cluster); :func:`embed_input` does the same for one query input.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MediaError
from ..modality import AUDIO, MODALITIES, TEXT, VISION, FileKind
from .media import DECODE_TIMEOUT, audio_segments, pool, registry, video
from .media.passages import Passage, cut_passages
from .media.text import MAX_TEXT_BYTES, DocumentText, read_document, read_text
from .media.tokenizer import tokenize
from .runtime import Encoder
from .work import (
    Batch,
    FileVectors,
    FileWork,
    MediaItem,
    Segments,
    Span,
    finished,
    plan_batches,
    plan_segments,
    prepare,
    take_batch,
    take_segments,
)

#: Below this many files to decode, worker start-up costs more than it saves.
PARALLEL_MIN_ITEMS = 24


def default_workers(device: str, items: int) -> int:
    """Decoding processes when the caller did not say: enough to keep the model fed, never idle cores.

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


#: Towers whose decoders are safe on threads (Pillow and the picture plugins): without worker processes,
#: their inputs decode in rounds on threads while the model waits (PDFium, for documents, is not safe).
THREADED_DECODING = frozenset({VISION})
#: At most this many threads decode one round.
DECODE_THREADS_MOST = 8


def default_threads(modality: str, workers: int, items: int) -> int:
    """Threads that decode a round of ``modality``'s ``items`` when ``workers`` processes are 0: the
    cores this process may use (the model waits meanwhile), else 1.

    Where the model waits for decoding anyway (one batch, or too few files for workers), a core left
    idle is time lost: 4 real JPEGs took 194 ms on one thread, 131 ms on two (2 cores).
    """
    if workers > 0 or modality not in THREADED_DECODING:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, DECODE_THREADS_MOST, items))


@dataclass(frozen=True)
class _Decoding:
    """How items are decoded: worker processes, a time limit per item, and who hears of each."""

    workers: int | None
    timeout: float | None
    on_decoded: Callable[[int], None] | None


def embed_files(
    encoder: Encoder,
    items: Iterable[MediaItem],
    *,
    workers: int | None = None,
    timeout: float | None = DECODE_TIMEOUT,
    on_decoded: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, FileVectors | MediaError]]:
    """Embed ``items``; yield ``(index, FileVectors or MediaError)`` once per item, as each completes.

    ``index`` is the item's position in ``items``. ``workers``: decoding processes (None: see
    :func:`default_workers`, and without workers :func:`default_threads`; 0: in this process, on
    one thread). ``timeout``: seconds a worker may spend decoding
    one file (None: no limit; none can be enforced in this process). ``on_decoded(index)`` is called
    each time an item has been decoded for one tower, before it is encoded, and before each streaming
    pass over it (a sign of life for progress displays, which name the file under way). A bad file
    comes back as a :class:`MediaError`; it never stops the others.
    Whatever the workers, the same items give the same bits (see :mod:`.work`).
    """
    works = prepare(items)
    batches = plan_batches(works, encoder.batch_size)
    decoding = _Decoding(workers, timeout, on_decoded)
    for modality in MODALITIES:
        yield from _encode_tower(encoder, works, [b for b in batches if b.modality == modality], decoding)
    for work in works:
        for modality in work.streamed:
            if work.error is None:
                if decoding.on_decoded is not None:
                    decoding.on_decoded(work.index)  # its streaming pass begins: it is under way again
                encode_segments(encoder, work, modality)
        yield from finished([work])


def _encode_tower(
    encoder: Encoder, works: list[FileWork], batches: list[Batch], decoding: _Decoding
) -> Iterator[tuple[int, FileVectors | MediaError]]:
    """Decode the members of one tower's ``batches`` and encode each batch once all of it is decoded."""
    members = [index for batch in batches for index in batch.members]
    if not members:
        return
    modality = batches[0].modality
    batch_of = {index: batch for batch in batches for index in batch.members}
    waiting = {batch: set(batch.members) for batch in batches}
    decoded: dict[int, Any] = {}
    workers = decoding.workers
    n_workers = workers if workers is not None else default_workers(encoder.device.type, len(members))
    # Threads only when the caller left the choice to us: "0 workers" asked for this process alone.
    threads = default_threads(modality, n_workers, len(members)) if workers is None else 1
    sources = [(works[i].item.kind, works[i].item.source) for i in members]
    loader, timeout = registry.load_item, decoding.timeout
    for position, tensor in pool.load_parallel(
        modality, sources, n_workers, loader=loader, timeout=timeout, threads=threads
    ):
        index = members[position]
        if decoding.on_decoded is not None:
            decoding.on_decoded(index)
        if isinstance(tensor, MediaError):
            works[index].fail(tensor)
            yield from finished([works[index]])
        else:
            decoded[index] = tensor
        batch = batch_of[index]
        waiting[batch].discard(index)
        if not waiting[batch]:
            present = [i for i in batch.members if i in decoded]
            if present:
                vectors = encode_batch(encoder, modality, [decoded.pop(i) for i in present])
                take_batch(works, batch, dict(zip(present, vectors, strict=True)))
            yield from finished(works[i] for i in batch.members)


def encode_batch(encoder: Encoder, modality: str, inputs: list[Any]) -> np.ndarray:
    """One planned batch's decoded inputs (tensors or arrays of one shape) -> ``(n, dim)`` vectors."""
    import torch

    return encoder.encode(modality, torch.stack([torch.as_tensor(x) for x in inputs]))


def encode_segments(encoder: Encoder, work: FileWork, modality: str) -> None:
    """Stream ``work``'s media once: segment vectors of ``modality`` (and, for long audio, the
    file-level vector, computed from the clip windows in the same pass), recorded on ``work``."""
    try:
        vectors, spans = segment_vectors(encoder, work, modality)
    except MediaError as exc:
        work.fail(exc)
        return
    take_segments(work, modality, vectors, spans)


def segment_vectors(encoder: Encoder, work: FileWork, modality: str) -> tuple[list[np.ndarray], list[Span]]:
    """The segment vectors of ``modality`` and their spans, from one streaming pass over the file
    (none for media shorter than one window). For long audio the pass also puts the file-level
    vector on ``work``. Raises :class:`MediaError` for media that cannot be decoded."""
    import torch

    if modality == TEXT:
        return passage_vectors(encoder, work)
    result, source = work.result, work.item.source
    vectors: list[np.ndarray] = []
    spans: list[Span] = []
    batch: list[Any] = []

    def flush() -> None:
        if batch:
            inputs = torch.stack([seg.features if modality == AUDIO else seg.pictures for seg in batch])
            out = encoder.encode(modality, inputs)
            result.encoded += len(out)
            vectors.extend(out)
            spans.extend((round(seg.start, 3), round(seg.end, 3)) for seg in batch)
            batch.clear()

    if modality == AUDIO and work.plan[AUDIO] == Segments.LONG:
        whole = audio_segments.long_file_features(source, float(result.info["duration"]))
        result.encoded += 1
        result.put(AUDIO, encoder.encode(AUDIO, whole[None]), [(None, None)])
    stream = audio_segments.stream_segments(source) if modality == AUDIO else video.video_segments(source)
    for seg in stream:
        batch.append(seg)
        if len(batch) >= encoder.batch_size:
            flush()
    flush()
    return vectors, spans


def passage_vectors(encoder: Encoder, work: FileWork) -> tuple[list[np.ndarray], list[Span]]:
    """The vectors of a text's passages (:mod:`.media.passages`), put on ``work.result.passages``, in
    batches through the text tower; their spans are None (a passage has characters, not seconds). A
    text read whole by its file-level vector (one passage, the same token ids) reuses that vector.
    Raises :class:`MediaError` for a file that cannot be read."""
    source, result = work.item.source, work.result
    name = source if isinstance(source, str) else None
    try:
        doc = read_document(source, name=name)
    except MediaError as exc:
        if exc.transient:
            raise
        # Readable as far as the file-level vector read it, not beyond (a bad byte further on): the
        # passages of that much, as the note was indexed before it had passages.
        doc = DocumentText(read_text(source, name=name))
    # Only characters the tokenizer drops (no passage): the whole text, read by the file-level vector.
    passages = cut_passages(doc) or [Passage(0, len(doc.text), doc.text, doc.page_of(0))]
    result.passages = passages
    tokens = tokenize([p.text for p in passages])
    whole = result.vectors.get(TEXT)  # absent on a cluster's actor, which has only this file's passages
    # A short text was read whole for the file-level vector too (at most 4 bytes a character, within
    # its head's limit): its tokens are the whole text's, compared here without reading the file again.
    if len(passages) == 1 and whole is not None and len(doc.text) <= MAX_TEXT_BYTES // 4 - 1:
        if bool((tokens[0] == tokenize([doc.text])[0]).all()):
            return [whole[0]], [(None, None)]
    vectors: list[np.ndarray] = []
    for start in range(0, len(passages), encoder.batch_size):
        out = encoder.encode(TEXT, tokens[start : start + encoder.batch_size])
        result.encoded += len(out)
        vectors.extend(out)
    return vectors, [(None, None)] * len(vectors)


def embed_input(encoder: Encoder, kind: FileKind, modality: str, source: Any) -> np.ndarray:
    """The ``(dim,)`` float32 vector of one input (a file, its bytes, or an in-memory picture or array)
    of ``kind`` for ``modality``'s tower; raises :class:`MediaError` for bad media."""
    item = registry.load(kind, modality, source)
    return encoder.encode(modality, item[None])[0]


__all__ = [
    "FileVectors",
    "MediaItem",
    "PARALLEL_MIN_ITEMS",
    "Segments",
    "default_threads",
    "default_workers",
    "embed_files",
    "embed_input",
    "encode_batch",
    "encode_segments",
    "passage_vectors",
    "segment_vectors",
    "plan_segments",
]
