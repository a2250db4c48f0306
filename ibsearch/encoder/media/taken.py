"""When a file was taken: a photo's EXIF date, a video's (or a sound's) container creation time, else the
file's modification time; and the camera, while the EXIF is read. What goes into a file's media info:
``taken`` (Unix seconds), ``taken_from`` ("exif", "quicktime" or "file") and ``camera`` ("Make Model").

Camera clocks keep local time: an EXIF date carries its zone only in the offset tags that EXIF 2.31 added
(``OffsetTimeOriginal``); without one it is read as this machine's local time, as a person reading the
date means it. Containers (QuickTime/MP4, Matroska) write ``creation_time`` in UTC.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

#: The Unix seconds a date taken may be: the years 1 to 9999 (what a date can be written as), less a day
#: or two at each end, where local time would cross them.
TAKEN_RANGE = (-62_135_596_800.0 + 2 * 86_400, 253_402_300_799.0 - 2 * 86_400)
#: The media-info keys this module writes.
DATE_KEYS = ("taken", "taken_from", "camera")
EXIF, CONTAINER, FILE = "exif", "quicktime", "file"  # where ``taken`` came from

_EXIF_IFD = 0x8769  # the EXIF sub-IFD, where cameras write the dates
_MAKE, _MODEL = 271, 272
#: (date, its offset) tags, best first: when the picture was taken, else when it was digitized (a scan).
_DATE_TAGS = ((36867, 36881), (36868, 36882))
# "2024:06:01 18:30:00" (EXIF's form); some tools write dashes or slashes in the date, or a T.
_EXIF_DATE = re.compile(r"(\d{4})[:/-](\d\d)[:/-](\d\d)[ T](\d\d):(\d\d):(\d\d)")
_OFFSET = re.compile(r"([+-])(\d\d):?(\d\d)")
#: Container keys with a creation date, best first: Apple's keeps the zone of the place it was shot.
_CONTAINER_KEYS = ("com.apple.quicktime.creationdate", "creation_time")


def picture_dates(img: Image.Image) -> dict[str, Any]:
    """``taken``/``taken_from`` (and ``camera``) from an open picture's EXIF (what Pillow and its plugins
    read of JPEG, HEIC, WebP, TIFF...); {} without a date or a camera, or with EXIF it cannot read."""
    try:
        return exif_dates(img.getexif())
    except Exception as exc:  # noqa: BLE001 - damaged EXIF: the file's own date will do
        log.debug("cannot read the EXIF of %r: %s", getattr(img, "filename", img), exc)
        return {}


def exif_dates(exif: Image.Exif) -> dict[str, Any]:
    """What :func:`picture_dates` reads, from Pillow's ``Exif`` (its first IFD and its EXIF sub-IFD)."""
    exif_ifd = exif.get_ifd(_EXIF_IFD)
    found: dict[str, Any] = {}
    for date_tag, offset_tag in _DATE_TAGS:
        when = _exif_moment(exif_ifd.get(date_tag) or exif.get(date_tag), exif_ifd.get(offset_tag))
        if when is not None:
            found.update(taken=when, taken_from=EXIF)
            break
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    camera = model if make and model.lower().startswith(make.lower()) else f"{make} {model}".strip()
    if camera:
        found["camera"] = camera
    return found


def container_dates(metadata: Mapping[str, str]) -> dict[str, Any]:
    """``taken``/``taken_from`` from a container's metadata (PyAV's ``container.metadata``, else a
    stream's); {} without a creation date. A zero date (1970, or QuickTime's 1904) means none was set."""
    for key in _CONTAINER_KEYS:
        text = _text(metadata.get(key))
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)  # FFmpeg writes UTC ("...Z"); some tools drop the Z
        if when.timestamp() > 0:
            return {"taken": when.timestamp(), "taken_from": CONTAINER}
    return {}


def stored_taken(info: Mapping[str, Any]) -> float | None:
    """The date taken of a stored media info, or None: none, or a value that is not Unix seconds of
    :data:`TAKEN_RANGE` (media info imported before shards' dates were checked)."""
    taken = info.get("taken")
    if isinstance(taken, bool) or not isinstance(taken, int | float):
        return None
    return float(taken) if TAKEN_RANGE[0] <= taken <= TAKEN_RANGE[1] else None


def file_date(mtime: float) -> dict[str, Any]:
    """The fallback: the file's modification time (Unix seconds)."""
    return {"taken": float(mtime), "taken_from": FILE}


def _exif_moment(raw: Any, offset: Any) -> float | None:
    match = _EXIF_DATE.match(_text(raw))
    if match is None:
        return None  # absent, blank or "0000:00:00 00:00:00"-like: no date
    zone = _OFFSET.fullmatch(_text(offset))
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        when = datetime(year, month, day, hour, minute, second)
        if zone is not None:
            shift = timedelta(hours=int(zone.group(2)), minutes=int(zone.group(3)))
            when = when.replace(tzinfo=timezone(-shift if zone.group(1) == "-" else shift))
        seconds = when.timestamp()  # naive: local time
    except (ValueError, OverflowError, OSError):
        return None  # no such day or zone (month 13, "+25:00"), or past what this machine's clock can say
    return seconds if TAKEN_RANGE[0] <= seconds <= TAKEN_RANGE[1] else None


def _text(value: Any) -> str:
    """An EXIF or metadata value as clean text (ASCII tags may come as bytes, padded with NULs)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.replace("\x00", " ").strip() if isinstance(value, str) else ""


__all__ = [
    "CONTAINER",
    "DATE_KEYS",
    "EXIF",
    "FILE",
    "TAKEN_RANGE",
    "container_dates",
    "exif_dates",
    "file_date",
    "picture_dates",
    "stored_taken",
]
