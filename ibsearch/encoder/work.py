"""What turning files into vectors consists of: files planned into batches, and results put together.

Planning is a pure function of the files (their kinds and media facts) and the batch size, so every
way of running it (in this process, in worker processes, on a cluster) encodes exactly the same
batches and so produces the very same bits: a tower's output for an item depends, at float rounding,
on which items share its batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MediaError
from ..modality import AUDIO, KIND_MODALITIES, MODALITIES, TEXT, VISION, FileKind, segments_key
from .media import audio_segments, registry
from .media.probe import probe
from .media.video import segment_spans

if TYPE_CHECKING:
    from .media.passages import Passage

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
    unit rows, and ``spans`` to their ``(start, end)`` seconds (None for text, whose segments are
    ``passages``: character spans). ``modalities`` are the file-level
    modalities it yields (a video without sound: vision only), ``info`` the probed media facts, and
    ``encoded`` the number of vectors the model computed for it.
    """

    modalities: tuple[str, ...]
    info: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    spans: dict[str, list[Span]] = field(default_factory=dict)
    encoded: int = 0
    passages: list[Passage] = field(default_factory=list)  # what each ``text.segments`` row reads

    def put(self, key: str, vectors: np.ndarray, spans: list[Span]) -> None:
        self.vectors[key] = vectors
        self.spans[key] = spans


class Segments(Enum):
    """How a file's sound (or a video's pictures) is cut into timestamped segments (a text: passages)."""

    WHOLE = "whole"  # short media: the file-level vector is its one segment
    STREAM = "stream"  # segments come from one streaming pass over the file (a text's: its passages)
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
    if TEXT in modalities:
        # Its length is known only once it is read: a note of one passage reuses the file-level vector.
        plan[TEXT] = Segments.STREAM
    if kind == FileKind.VIDEO and VISION in modalities:
        # The file-level picture vector already streams (only the frames it needs are decoded).
        plan[VISION] = Segments.WHOLE if short else Segments.STREAM
    return modalities, plan


#: Bytes of a text per passage, to guess a text's passages before it is read (a 1 MB note of prose
#: gave one per 281 characters, passages overlapping; BENCHMARKS.md "Passages of long text"), and
#: the most passages one file is guessed to have (a PDF's bytes are mostly not its text).
_PASSAGE_BYTES = 300
_MOST_PASSAGES = 5000


def planned_inputs(kind: FileKind, info: dict[str, Any], size: int = 0) -> int:
    """About how many inputs the model will encode for a file of ``kind`` with the media facts
    ``info`` (its probe) and ``size`` bytes: one per file-level modality, one per 6 s window of
    sound or video, and a text's passages guessed from its size (it is read only when encoded).
    Progress displays count work in these, so that an hour of audio weighs what it costs."""
    modalities, plan = plan_segments(kind, info)
    windows = len(segment_spans(float(info.get("duration") or 0.0)))
    count = len(modalities)
    for modality, how in plan.items():
        if how is not Segments.WHOLE:
            count += min(max(1, size // _PASSAGE_BYTES), _MOST_PASSAGES) if modality == TEXT else windows
    return count


@dataclass
class FileWork:
    """A file in progress: its result so far, or the reason it failed."""

    index: int  # position among the items of the run
    item: MediaItem
    result: FileVectors
    plan: dict[str, Segments]
    error: str | None = None
    transient: bool = False  # the error is not the file's content (a crash, a timeout, an I/O error)
    reported: bool = False

    @property
    def streamed(self) -> list[str]:
        """Modalities whose segments come from a streaming pass over the file."""
        return [m for m, how in self.plan.items() if how != Segments.WHOLE]

    @property
    def done(self) -> bool:
        if self.error is not None:
            return True
        vectors = self.result.vectors
        return all(m in vectors for m in self.result.modalities) and all(
            segments_key(m) in vectors for m in self.streamed
        )

    def fail(self, error: MediaError) -> None:
        self.error, self.transient = error.reason, error.transient

    def outcome(self) -> FileVectors | MediaError:
        if self.error is None:
            return self.result
        name = self.item.source if isinstance(self.item.source, str) else "<bytes>"
        return MediaError(name, self.error, transient=self.transient)


def prepare(items: Iterable[MediaItem]) -> list[FileWork]:
    """Probe each item (header reads only) and plan what the model will compute for it."""
    works = []
    for index, item in enumerate(items):
        info = item.info
        if info is None:
            info = probe(item.source, item.kind) if isinstance(item.source, str) else {}
        modalities, plan = plan_segments(item.kind, info)
        works.append(FileWork(index, item, FileVectors(modalities, dict(info)), plan))
    return works


@dataclass(frozen=True)
class Batch:
    """Items whose inputs go through one tower together: same modality, same input shape."""

    modality: str
    shape: tuple[int, ...]
    members: tuple[int, ...]  # FileWork indexes, in input order


def plan_batches(works: list[FileWork], batch_size: int) -> list[Batch]:
    """The file-level batches of ``works``, tower by tower in ImageBind's order: the items of each
    input shape in input order, cut every ``batch_size`` (images and videos are both vision, with
    different shapes). Long audio is left out: its file-level vector comes from the streaming pass."""
    batches = []
    for modality in MODALITIES:
        groups: dict[tuple[int, ...], list[int]] = {}
        for work in works:
            if modality in work.result.modalities and work.plan.get(modality) != Segments.LONG:
                shape = registry.loader(work.item.kind, modality).shape
                groups.setdefault(shape, []).append(work.index)
        for shape, members in groups.items():
            for start in range(0, len(members), batch_size):
                batches.append(Batch(modality, shape, tuple(members[start : start + batch_size])))
    return batches


def take_batch(works: list[FileWork], batch: Batch, encoded: dict[int, np.ndarray]) -> None:
    """Record the vectors a batch's items got (``encoded``: work index -> ``(dim,)`` vector)."""
    for index, vec in encoded.items():
        work = works[index]
        work.result.encoded += 1
        if not np.isfinite(vec).all():
            work.error = f"the model produced a non-finite {batch.modality} vector (silent or corrupt input?)"
            continue
        work.result.put(batch.modality, vec[None, :], [(None, None)])
        if work.plan.get(batch.modality) == Segments.WHOLE:
            # Short media: one segment, the whole file (so --segments finds them too).
            span = (0.0, work.result.info.get("duration"))
            work.result.put(segments_key(batch.modality), vec[None, :], [span])


def take_segments(work: FileWork, modality: str, vectors: list[np.ndarray], spans: list[Span]) -> None:
    """Record the segment vectors of a streaming pass (none for media shorter than one window)."""
    result = work.result
    if not vectors:
        vectors = list(result.vectors[modality])
        spans = [(0.0, result.info.get("duration"))]
    stacked = np.stack(vectors)
    if not np.isfinite(stacked).all():
        work.error = f"the model produced non-finite {modality} segment vectors (silent or corrupt input?)"
        return
    result.put(segments_key(modality), stacked, spans)


def finished(works: Iterable[FileWork]) -> Iterator[tuple[int, FileVectors | MediaError]]:
    """``(index, outcome)`` of each of ``works`` that is done and not reported yet (each once)."""
    for work in works:
        if work.done and not work.reported:
            work.reported = True
            yield work.index, work.outcome()


__all__ = [
    "Batch",
    "FileVectors",
    "FileWork",
    "MediaItem",
    "Segments",
    "Span",
    "finished",
    "plan_batches",
    "plan_segments",
    "planned_inputs",
    "prepare",
    "take_batch",
    "take_segments",
]
