"""The vocabulary of ibsearch: ImageBind's six modalities, and the kinds of file they come from.

A *modality* is one of ImageBind's towers (``vision``, ``text``, ``audio``, ``depth``, ``thermal``,
``imu``); its name is used everywhere (index file names, DB columns, CLI values, logs). A *file kind*
(:class:`FileKind`) says what a file holds and so which modalities it yields: a video gives a
``vision`` vector (its picture) and an ``audio`` vector (its sound). ``image`` and ``video`` are
accepted as aliases of ``vision`` at the edges (CLI values, keyword arguments) only, never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from .errors import UsageError

VISION = "vision"
TEXT = "text"
AUDIO = "audio"
DEPTH = "depth"
THERMAL = "thermal"
IMU = "imu"

#: The six modalities, in ImageBind's order.
MODALITIES: tuple[str, ...] = (VISION, TEXT, AUDIO, DEPTH, THERMAL, IMU)

# Accepted at the edges (CLI, Python keyword arguments) only; never stored.
ALIASES: dict[str, str] = {"image": VISION, "video": VISION}


class FileKind(str, Enum):
    """What a file holds; :data:`KIND_MODALITIES` says which modalities each kind yields."""

    IMAGE = "image"  # a photo or picture
    AUDIO = "audio"  # a sound recording
    VIDEO = "video"  # moving pictures, usually with a sound track
    TEXT = "text"  # a text note
    DEPTH = "depth"  # a depth map (metres or millimetres per pixel)
    THERMAL = "thermal"  # a thermal camera image
    IMU = "imu"  # accelerometer + gyroscope samples

    def __str__(self) -> str:
        return self.value


#: Modalities each file kind yields (a video's picture is vision, its sound track audio).
KIND_MODALITIES: dict[FileKind, tuple[str, ...]] = {
    FileKind.IMAGE: (VISION,),
    FileKind.AUDIO: (AUDIO,),
    FileKind.VIDEO: (VISION, AUDIO),
    FileKind.TEXT: (TEXT,),
    FileKind.DEPTH: (DEPTH,),
    FileKind.THERMAL: (THERMAL,),
    FileKind.IMU: (IMU,),
}

#: The file kind a query input of each modality is read as, unless the input says otherwise.
QUERY_KINDS: dict[str, FileKind] = {
    VISION: FileKind.IMAGE,
    TEXT: FileKind.TEXT,
    AUDIO: FileKind.AUDIO,
    DEPTH: FileKind.DEPTH,
    THERMAL: FileKind.THERMAL,
    IMU: FileKind.IMU,
}


# Timestamped segments of long media live in their own index per modality, named "<modality>.segments",
# so that file-level searches never see them (and need no filter to skip them).
SEGMENTS_SUFFIX = ".segments"
# Video pictures, sound (audio files, video tracks), and passages of text (character spans, not seconds).
SEGMENTED: tuple[str, ...] = (VISION, TEXT, AUDIO)
INDEX_KEYS: tuple[str, ...] = MODALITIES + tuple(m + SEGMENTS_SUFFIX for m in SEGMENTED)


def segments_key(modality: str) -> str:
    """The index key holding the segments of ``modality`` (e.g. ``audio.segments``)."""
    return modality + SEGMENTS_SUFFIX


def modality_of_key(key: str) -> str:
    """The modality an index key belongs to (``audio.segments`` -> ``audio``)."""
    return key[: -len(SEGMENTS_SUFFIX)] if key.endswith(SEGMENTS_SUFFIX) else key


def canonical(name: str) -> str:
    """Return the canonical modality name for ``name`` (an alias such as ``image`` is accepted).

    Raises :class:`UsageError` listing the valid names if ``name`` is unknown.
    """
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in MODALITIES:
        known = ", ".join(MODALITIES + tuple(ALIASES))
        raise UsageError(f"unknown modality {name!r}; choose one of: {known}")
    return key


def resolve_modalities(modalities: Iterable[str] | str | None) -> list[str]:
    """Canonical modality names in ImageBind's order, each once; None means all six."""
    if modalities is None:
        return list(MODALITIES)
    if isinstance(modalities, str):
        modalities = [modalities]
    wanted = {canonical(m) for m in modalities}
    return [m for m in MODALITIES if m in wanted]
