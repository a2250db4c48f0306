"""Items as the API shows them: a file of the library by its id, its kind, URLs, and the file itself.

An item id is the file's row id in the library database (``files.id``): stable while the file stays
in the library. Files are only ever reached through an id, and only if the file on disk is still
the one that was ingested (a regular file of the recorded size and modification time): a file
replaced by a link to somewhere else, or by a device or a pipe, is refused. A file that only an
import put in the library (its path, size and hash a shard's word, ``/etc/passwd`` as well as a
photo) is refused until an ingest of its folder has read it: a shard must not be able to make the
server hand out any file its user can read.
"""

from __future__ import annotations

import codecs
import mimetypes
import os
import stat
from typing import Any

from starlette.types import Receive, Scope, Send

from ..closing import Closing
from ..errors import IbsearchError
from ..files import path_fields
from ..modality import AUDIO, VISION
from ..search import Hit
from ..store.records import FileRecord, Verified
from .models import Item, Result, printable
from .responses import RangeFileResponse

API = "/api/items"
FD_FOLDER = "/proc/self/fd"
# Types for the media we index that mimetypes may not know, or names differently per platform.
CONTENT_TYPES = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4",
    ".aac": "audio/aac", ".aif": "audio/aiff", ".aiff": "audio/aiff", ".mp4": "video/mp4",
    ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska", ".webm": "video/webm",
    ".avi": "video/x-msvideo", ".avif": "image/avif", ".webp": "image/webp",
    ".npy": "application/octet-stream", ".csv": "text/csv; charset=utf-8",
    ".txt": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8",
}  # fmt: skip
#: Families of content types a browser may show inline; anything else goes out as bytes.
SHOWN = ("image/", "audio/", "video/", "text/plain", "text/csv")
#: Content types a browser could run as a page or a script: never sent, whatever the file's name.
ACTIVE = ("image/svg", "text/html", "application/xhtml")


class FileChanged(IbsearchError):
    """An item's file on disk is no longer what was ingested (answered with 409)."""


def kind_of(record: FileRecord) -> str:
    """What the file holds: ``image``, ``video``, ``audio``, ``text``, ``depth``, ``thermal`` or ``imu``."""
    info = record.info
    if record.modality == VISION and ("has_video" in info or "fps" in info or "duration" in info):
        return "video"
    if record.modality == VISION:
        return "image"
    return record.modality


def content_type(record: FileRecord, head: bytes = b"") -> str:
    """The content type the file is served with (never one a browser would run); a text's charset is
    the one its first bytes ``head`` are in (a Latin-1 note is not sent as UTF-8)."""
    ext = os.path.splitext(record.path)[1].lower()
    found = CONTENT_TYPES.get(ext) or mimetypes.guess_type(f"x{ext}")[0] or ""
    if not found.startswith(SHOWN) or found.startswith(ACTIVE):
        if record.modality == AUDIO:
            return "audio/mpeg" if ext == ".mp3" else "application/octet-stream"
        return "application/octet-stream"
    if found.startswith("text/") and head:
        return f"{found.split(';')[0]}; charset={web_charset(head)}"
    return found


def web_charset(head: bytes) -> str:
    """The charset label a browser reads text beginning with ``head`` by (UTF-8 when none fits)."""
    from ..encoder.media.charsets import guess_encoding

    name = codecs.lookup(guess_encoding(head) or "utf-8").name
    return {"utf-16-le": "utf-16le", "utf-16-be": "utf-16be"}.get(name, name)


class CheckedFile(Closing):
    """An item's file, opened and checked to be the regular file that was ingested (read by a local
    ingest, same size and modification time); :class:`FileChanged` otherwise (imported only, gone,
    edited, or swapped for a link to another file, a device or a pipe).

    ``path`` opens this very file again (``/proc/self/fd/N`` where the system has it), so that what
    is sent or decoded is what was checked, even if the name is pointed elsewhere meanwhile.
    """

    def __init__(self, record: FileRecord) -> None:
        if record.verified < Verified.INGEST:
            raise FileChanged(
                f"the file of item {record.id} was imported and no ingest has read it here; run "
                "'ibsearch ingest' on its folder to have it served"
            )
        try:
            # O_NONBLOCK: opening a pipe put in the file's place must not hang the server.
            fd = os.open(record.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise FileChanged(f"the file of item {record.id} cannot be read now ({exc.strerror})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != record.size or st.st_mtime_ns != record.mtime_ns:
            os.close(fd)
            raise FileChanged(
                f"the file of item {record.id} has changed on disk since it was ingested; "
                "run 'ibsearch ingest' on its folder again"
            )
        self.fd, self.stat = fd, st
        self.path = f"{FD_FOLDER}/{fd}" if os.path.isdir(FD_FOLDER) else record.path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ItemFileResponse(RangeFileResponse):
    """A :class:`RangeFileResponse` of a :class:`CheckedFile`, closed when the answer has been sent."""

    def __init__(self, checked: CheckedFile, **options: Any) -> None:
        super().__init__(checked.path, stat_result=checked.stat, **options)
        self.checked = checked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.checked.close()


def urls(item_id: int) -> dict[str, str]:
    return {"thumbnail": f"{API}/{item_id}/thumbnail", "media": f"{API}/{item_id}/media"}


def item_model(record: FileRecord) -> Item:
    """The API's view of one stored file."""
    return Item(
        id=record.id,
        **path_fields(record.path),
        kind=kind_of(record),
        modality=record.modality,
        size=record.size,
        metadata=printable(record.info),
        added=record.added,
        updated=record.updated,
        **urls(record.id),
    )


def result_model(record: FileRecord, hit: Hit) -> Result:
    """The API's view of one hit (its fields as :meth:`Hit.to_dict`, plus the item's id, kind and URLs,
    also of each near-duplicate folded into it)."""
    data: dict[str, Any] = {"start": None, "end": None, **printable(hit.to_dict()), **urls(record.id)}
    if hit.similar:  # the folded near-duplicates, with what the page needs to show each
        folded = zip(data["similar"], hit.similar, strict=True)
        data["similar"] = [{**entry, "id": h.file_id, **urls(h.file_id or 0)} for entry, h in folded]
    return Result(id=record.id, kind=kind_of(record), **data)


__all__ = [
    "CheckedFile",
    "FileChanged",
    "ItemFileResponse",
    "content_type",
    "item_model",
    "kind_of",
    "result_model",
    "urls",
]
