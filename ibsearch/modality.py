"""ImageBind's modality vocabulary, used everywhere (enum values, CLI values, index names, DB columns)."""

from __future__ import annotations

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


# Timestamped segments of long media live in their own index per modality, named "<modality>.segments",
# so that file-level searches never see them (and need no filter to skip them).
SEGMENTS_SUFFIX = ".segments"
SEGMENTED: tuple[str, ...] = (VISION, AUDIO)  # video pictures, and sound (audio files, video tracks)
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
