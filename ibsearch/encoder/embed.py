"""From media to vectors: the one call that ingest, search and every later caller make.

:func:`embed_files` takes files (paths or bytes) with their kind and returns, per file, numpy vectors
with their time spans: one file-level vector per modality the file yields, and for long media the
timestamped segments (see :mod:`.media.audio_segments`). Inside, files are probed, decoded (in
worker processes where cores are spare), batched by input shape and encoded tower by tower, so
only the towers a run needs are loaded. :func:`embed_input` does the same for one query input.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from ..errors import MediaError
from ..modality import AUDIO, KIND_MODALITIES, MODALITIES, VISION, FileKind, segments_key
from .media import DECODE_TIMEOUT, audio_segments, pool, registry, video
from .media.probe import probe
from .runtime import Encoder

#: Below this many files to decode, worker start-up costs more than it saves.
PARALLEL_MIN_ITEMS = 24

Span = tuple[float | None, float | None]  # (start, end) seconds; (None, None) for a whole-file vector


@dataclass(frozen=True)
class MediaItem:
    """One file to embed: a path or the file's bytes, and what kind of file it is."""

    source: str | bytes
    kind: FileKind
    info: dict[str, Any] | None = None  # probed media facts; None: probe a path here


@dataclass
class FileVectors:
    """What the model made of one file.

    ``vectors`` maps an index key (a modality, or ``<modality>.segments``) to ``(n, dim)`` float32
    unit rows, and ``spans`` to their ``(start, end)`` seconds. ``modalities`` are the file-level
    modalities it yields (a video without sound: vision only), ``info`` the probed media facts, and
    ``encoded`` the number of vectors the model computed for it.
    """

    modalities: tuple[str, ...]
    info: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    spans: dict[str, list[Span]] = field(default_factory=dict)
    encoded: int = 0

    def put(self, key: str, vectors: np.ndarray, spans: list[Span]) -> None:
        self.vectors[key] = vectors
        self.spans[key] = spans


class Segments(Enum):
    """How a file's sound (or a video's pictures) is cut into timestamped segments."""

    WHOLE = "whole"  # short media: the file-level vector is its one segment
    STREAM = "stream"  # segments come from one streaming pass over the file
    LONG = "long"  # that pass also gives the file-level vector (audio too long to load whole)


def plan_segments(kind: FileKind, info: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, Segments]]:
    """The file-level modalities of a file and how each segmented one is cut, from its media facts."""
    modalities = KIND_MODALITIES[kind]
    if kind == FileKind.VIDEO and info.get("has_video") is False and info.get("has_audio"):
        modalities = (AUDIO,)  # an MP4 with sound only (a voice memo, music): a sound file
    elif kind == FileKind.VIDEO and info.get("has_audio") is False:
        modalities = (VISION,)  # a video without sound: a picture vector only
    duration = float(info.get("duration") or 0.0)  # unknown: treated as short (one segment)
    short = duration < audio_segments.MIN_SEGMENTED_SECONDS
    plan: dict[str, Segments] = {}
    if AUDIO in modalities:
        if short:
            plan[AUDIO] = Segments.WHOLE
        elif duration <= audio_segments.STREAM_SECONDS:
            plan[AUDIO] = Segments.STREAM
        else:
            plan[AUDIO] = Segments.LONG
    if kind == FileKind.VIDEO and VISION in modalities:
        # The file-level picture vector already streams (only the frames it needs are decoded).
        plan[VISION] = Segments.WHOLE if short else Segments.STREAM
    return modalities, plan


@dataclass
class _Work:
    """A file in progress: its result so far, or the reason it failed."""

    index: int
    item: MediaItem
    result: FileVectors
    plan: dict[str, Segments]
    error: str | None = None
    transient: bool = False  # the error is not the file's content (a crash, a timeout, an I/O error)
    reported: bool = False

    @property
    def done(self) -> bool:
        if self.error is not None:
            return True
        vectors = self.result.vectors
        streamed = [m for m, how in self.plan.items() if how != Segments.WHOLE]
        return all(m in vectors for m in self.result.modalities) and all(
            segments_key(m) in vectors for m in streamed
        )


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
    :func:`default_workers`; 0: in this process). ``timeout``: seconds a worker may spend decoding
    one file (None: no limit; none can be enforced in this process). ``on_decoded(index)`` is called
    each time an item has been decoded for one tower, before it is encoded (a sign of life for
    progress displays).
    A bad file comes back as a :class:`MediaError`; it never stops the others.
    """
    works = []
    for index, item in enumerate(items):
        info = item.info
        if info is None:
            info = probe(item.source, item.kind) if isinstance(item.source, str) else {}
        modalities, plan = plan_segments(item.kind, info)
        works.append(_Work(index, item, FileVectors(modalities, dict(info)), plan))
    order = sorted({m for w in works for m in w.result.modalities}, key=MODALITIES.index)
    for modality in order:
        todo = [w for w in works if modality in w.result.modalities and w.error is None]
        todo = [w for w in todo if w.plan.get(modality) != Segments.LONG]  # done while streaming
        yield from _encode_tower(encoder, modality, todo, _Decoding(workers, timeout, on_decoded))
    for work in works:
        streamed = [m for m, how in work.plan.items() if how != Segments.WHOLE]
        for modality in streamed:
            if work.error is None:
                _encode_segments(encoder, work, modality)
        yield from _finished([work])


def _finished(works: Iterable[_Work]) -> Iterator[tuple[int, FileVectors | MediaError]]:
    for work in works:
        if work.done and not work.reported:
            work.reported = True
            name = work.item.source if isinstance(work.item.source, str) else "<bytes>"
            if work.error is None:
                yield work.index, work.result
            else:
                yield work.index, MediaError(name, work.error, transient=work.transient)


@dataclass(frozen=True)
class _Decoding:
    """How items are decoded: worker processes, a time limit per item, and who hears of each."""

    workers: int | None
    timeout: float | None
    on_decoded: Callable[[int], None] | None


def _encode_tower(
    encoder: Encoder, modality: str, todo: list[_Work], decoding: _Decoding
) -> Iterator[tuple[int, FileVectors | MediaError]]:
    """Decode ``todo`` for ``modality``'s tower and encode it in batches of one input shape each."""
    if not todo:
        return
    workers = decoding.workers
    n_workers = workers if workers is not None else default_workers(encoder.device.type, len(todo))
    # One batch per input shape: images (3, 224, 224) and videos (15, 3, 2, 224, 224) are both vision.
    batches: dict[tuple[int, ...], list[tuple[_Work, Any]]] = {}
    sources = [(w.item.kind, w.item.source) for w in todo]
    loaded = pool.load_parallel(
        modality, sources, n_workers, loader=registry.load_item, timeout=decoding.timeout
    )
    for position, tensor in loaded:
        work = todo[position]
        if decoding.on_decoded is not None:
            decoding.on_decoded(work.index)
        if isinstance(tensor, MediaError):
            work.error, work.transient = tensor.reason, tensor.transient
            yield from _finished([work])
            continue
        batch = batches.setdefault(tuple(tensor.shape), [])
        batch.append((work, tensor))
        if len(batch) >= encoder.batch_size:
            yield from _run_batch(encoder, modality, batch)
            batch.clear()
    for batch in batches.values():
        if batch:
            yield from _run_batch(encoder, modality, batch)


def _run_batch(
    encoder: Encoder, modality: str, batch: list[tuple[_Work, Any]]
) -> Iterator[tuple[int, FileVectors | MediaError]]:
    import torch

    vectors = encoder.encode(modality, torch.stack([tensor for _, tensor in batch]))
    for (work, _), vec in zip(batch, vectors, strict=True):
        work.result.encoded += 1
        if not np.isfinite(vec).all():
            work.error = f"the model produced a non-finite {modality} vector (silent or corrupt input?)"
            continue
        work.result.put(modality, vec[None, :], [(None, None)])
        if work.plan.get(modality) == Segments.WHOLE:
            # Short media: one segment, the whole file (so --segments finds them too).
            work.result.put(segments_key(modality), vec[None, :], [(0.0, work.result.info.get("duration"))])
    yield from _finished(work for work, _ in batch)


def _encode_segments(encoder: Encoder, work: _Work, modality: str) -> None:
    """Stream ``work``'s media once: segment vectors of ``modality`` (and, for long audio, the
    file-level vector, computed from the clip windows in the same pass)."""
    import torch

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

    try:
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
    except MediaError as exc:
        work.error, work.transient = exc.reason, exc.transient
        return
    if not vectors:
        vectors = list(result.vectors[modality])
        spans = [(0.0, result.info.get("duration"))]
    stacked = np.stack(vectors)
    if not np.isfinite(stacked).all():
        work.error = f"the model produced non-finite {modality} segment vectors (silent or corrupt input?)"
        return
    result.put(segments_key(modality), stacked, spans)


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
    "default_workers",
    "embed_files",
    "embed_input",
    "plan_segments",
]
