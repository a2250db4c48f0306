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
