"""Cheap media facts for the library (sizes, durations, when it was taken), read from headers without
decoding."""

from __future__ import annotations

import logging
import os
from typing import Any

from ...modality import FileKind
from .taken import DATE_KEYS, container_dates, file_date, picture_dates

log = logging.getLogger(__name__)

_PROBE_BYTES = str(64 * 1024)


def probe(path: str, kind: FileKind, mtime: float | None = None) -> dict[str, Any]:
    """Width/height of an image; duration, sample rate and channels of audio; also size and fps of video;
    and for every kind when it was taken (:mod:`.taken`: EXIF, container, else ``mtime``, by default the
    file's modification time now).

    ``kind`` is the file's kind. Never raises: what cannot be read is left out (the decoder reports
    broken files properly).
    """
    info: dict[str, Any] = {}
    try:
        if kind == FileKind.IMAGE:
            info = _probe_image(path)
        elif kind in (FileKind.AUDIO, FileKind.VIDEO):
            info = _probe_av(path, kind)
    except Exception as exc:  # noqa: BLE001 - a header we cannot read is not an error here
        log.debug("cannot probe %r: %s", path, exc)
    if "taken" not in info:
        try:
            info.update(file_date(os.stat(path).st_mtime if mtime is None else mtime))
        except OSError as exc:
            log.debug("cannot stat %r: %s", path, exc)
    return info


def probe_dates(path: str, kind: FileKind, mtime: float | None = None) -> dict[str, Any]:
    """Only what :func:`probe` says of when ``path`` was taken (``taken``, ``taken_from``, ``camera``)."""
    return {key: value for key, value in probe(path, kind, mtime).items() if key in DATE_KEYS}


def _probe_image(path: str) -> dict[str, Any]:
    from PIL import Image

    from .pictures import register_plugins

    register_plugins()  # a HEIC photo's size is in its header too
    with Image.open(path) as img:
        return {"width": int(img.width), "height": int(img.height), **picture_dates(img)}


def _probe_av(path: str, kind: FileKind) -> dict[str, Any]:
    import av

    info: dict[str, Any] = {}
    # FFmpeg reads up to 5 MB by default to identify streams (~50 ms for a WAV); headers need far less.
    with av.open(path, options={"probesize": _PROBE_BYTES}) as container:
        if container.duration is not None:
            info["duration"] = round(container.duration / 1_000_000, 3)
        if container.streams.audio:
            stream = container.streams.audio[0]
            info["sample_rate"] = int(stream.sample_rate or 0)
            info["channels"] = int(stream.channels or 0)
            if "duration" not in info and stream.duration is not None and stream.time_base:
                info["duration"] = round(float(stream.duration * stream.time_base), 3)
        info["has_audio"] = bool(container.streams.audio)
        for metadata in (container.metadata, *(s.metadata for s in container.streams)):
            if dated := container_dates(metadata):  # the container's date, else a stream's
                info.update(dated)
                break
        # Cover art is a "video stream" of one attached picture: it does not make a file a video.
        moving = [
            s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic
        ]
        if kind == FileKind.VIDEO:
            info["has_video"] = bool(moving)
        if moving:
            video = moving[0]
            info["width"], info["height"] = int(video.width), int(video.height)
            if video.average_rate:
                info["fps"] = round(float(video.average_rate), 3)
    return info
