"""What kind of media a file holds, decided by its first bytes and only then by its name.

One table maps a file's signature to a media kind; each kind names the modalities it is indexed
under. A file whose extension promises media but whose bytes disagree is a bad file (reported),
while a file that is neither media by content nor by name is simply not ours (skipped). A container
that may hold sound, pictures or both (Ogg, Matroska, MPEG-TS, FLV, MP4...) is called a video here;
its streams decide (``probe``, then ``work.plan_segments``): without moving pictures it is sound.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass

from ...modality import KIND_MODALITIES, FileKind
from .doc_formats import FORMATS, check_document, document_name
from .picture_formats import FORMATS as PICTURE_FORMATS
from .picture_formats import identify

IMAGE, AUDIO, VIDEO, TEXT = FileKind.IMAGE, FileKind.AUDIO, FileKind.VIDEO, FileKind.TEXT
DEPTH, THERMAL, IMU = FileKind.DEPTH, FileKind.THERMAL, FileKind.IMU

#: What ``ingest --as KIND`` turns a file of each detected kind into (a grayscale photo and a
#: thermal image look the same, so thermal, and depth stored as images, are chosen explicitly).
FORCED_KINDS: dict[FileKind, tuple[FileKind, ...]] = {
    THERMAL: (IMAGE,),
    DEPTH: (IMAGE, DEPTH),
    IMU: (IMU,),
    IMAGE: (IMAGE,),
    AUDIO: (AUDIO, VIDEO),
}

EXTENSIONS: dict[str, FileKind] = {
    **dict.fromkeys(
        [".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".avif"]
        + [".pbm", ".pnm", *(ext for fmt in PICTURE_FORMATS for ext in fmt.extensions)],
        IMAGE,
    ),
    **dict.fromkeys(
        [".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma"],
        AUDIO,
    ),
    **dict.fromkeys(
        [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".ogv", ".flv"]
        + [".3gp", ".3g2"],
        VIDEO,
    ),
    **dict.fromkeys(FORMATS, TEXT),  # documents read as text (doc_formats), and .gz ones by their inner name
    ".npy": DEPTH,  # a 2-D array; (N, 6) or (6, N) arrays are IMU recordings (see sniff_npy)
    ".csv": IMU,
}

_AUDIO_BRANDS = (b"M4A ", b"M4B ", b"M4P ", b"F4A ")
# ISO base media files that hold still pictures (AVIF, HEIF, Canon's CR3), not moving ones.
_IMAGE_BRANDS = (b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"crx ")

# Matroska/WebM, MPEG program stream, Ogg (Vorbis and Opus as well as Theora or VP8 video).
_CONTAINERS = (b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"OggS")
_ASF = b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"  # Windows Media (.wmv, .wma, .asf)

HEAD_BYTES = 512  # enough for a .npy header, and for three packets of an MPEG transport stream
TS_SYNCS = 4 + 2 * 192 + 1


@dataclass(frozen=True)
class Detection:
    """The outcome for one file: a media kind, or ``kind=None`` with a reason (bad) or without (not media)."""

    kind: FileKind | None
    reason: str | None = None
    transient: bool = False  # the reason is not the content (the file could not be opened)

    @property
    def modalities(self) -> tuple[str, ...]:
        return KIND_MODALITIES[self.kind] if self.kind else ()


def sniff(head: bytes) -> FileKind | None:
    """The media kind that the first bytes of a file announce, or None if they announce none."""
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n"):
        return IMAGE
    if head[:6] in (b"GIF87a", b"GIF89a") or head.startswith(b"BM"):
        return IMAGE
    if head[:4] in (b"II*\x00", b"MM\x00*") or (
        head[:1] == b"P" and head[1:2] in b"1234567" and head[2:3].isspace()
    ):
        return IMAGE  # TIFF (and the camera RAW files built on it), Netpbm (PBM, PGM, PPM, PAM)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return IMAGE
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return AUDIO
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return VIDEO
    if head[:4] == b"fLaC" or head[:3] == b"ID3":
        return AUDIO
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return AUDIO
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and head[1] != 0xFF:
        return AUDIO  # MPEG audio / ADTS AAC frame sync (JPEG's FF D8 was matched above)
    if head[4:8] == b"ftyp":
        if head[8:12] in _IMAGE_BRANDS:
            return IMAGE
        # An MP4 of another brand may still hold only sound (a voice memo): the probe finds out.
        return AUDIO if head[8:12] in _AUDIO_BRANDS else VIDEO
    if head[:4] in _CONTAINERS or head[:3] == b"FLV" or head.startswith(_ASF) or _mpeg_ts(head):
        # Containers that hold sound, pictures or both: the kind is a guess that the streams decide
        # (``probe`` reads them; a file without moving pictures is then indexed as sound only).
        return VIDEO
    return None


def _mpeg_ts(head: bytes) -> bool:
    """MPEG transport stream: a sync byte every 188 bytes (every 192 in M2TS, after a timestamp),
    three times, so that a text beginning with a "G" is not taken for one."""
    return any(head[start:TS_SYNCS:step] == b"G" * 3 for start, step in ((0, 188), (4, 192)))


def sniff_npy(head: bytes) -> FileKind | None:
    """Kind of a ``.npy`` file from its header: IMU for (N, 6)/(6, N), depth for other 2-D maps."""
    if not head.startswith(b"\x93NUMPY") or len(head) < 10:
        return None
    try:
        size = int.from_bytes(head[8:10], "little") if head[6] == 1 else int.from_bytes(head[8:12], "little")
        start = 10 if head[6] == 1 else 12
        header = ast.literal_eval(head[start : start + size].decode("latin1"))
        shape = tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError):
        return None
    if len(shape) == 2 and 6 in shape:
        return IMU
    if len(shape) == 2 or (len(shape) == 3 and 1 in (shape[0], shape[-1])):
        return DEPTH
    return None


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        # The 64-byte window may cut a multi-byte character at its end.
        return exc.start >= len(head) - 3


def detect(path: str, size: int | None = None, forced: FileKind | None = None) -> Detection:
    """Decide what ``path`` holds from its first bytes and its extension (one small read).

    ``forced`` is a kind chosen by the user (``ingest --as thermal``): files whose content fits it
    (see :data:`FORCED_KINDS`) become that kind; others are detected as usual.
    """
    forced = None if forced is None else FileKind(forced)
    ext = os.path.splitext(path)[1].lower()
    document = document_name(path)
    by_name = TEXT if document else EXTENSIONS.get(ext)
    if size == 0:
        return Detection(None, "empty file (0 bytes)") if by_name else Detection(None)
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        return Detection(None, f"cannot open: {exc.strerror or exc}", transient=True)
    if not head:
        return Detection(None, "empty file (0 bytes)") if by_name else Detection(None)
    by_content = sniff(head) or (IMAGE if identify(head, path) else None)
    if head.startswith(b"\x93NUMPY"):
        by_content = sniff_npy(head)
        if by_content is None:
            return Detection(None, "a .npy array that is neither a 2-D depth map nor (N, 6) IMU data")
    if by_name == IMU and by_content is None:
        by_content = IMU if _looks_like_text(head) else None
    if forced is not None and by_content in FORCED_KINDS.get(forced, ()):
        return Detection(forced)
    if document is not None:
        # A note may begin like a magic number ("BM", "GIF89a", "ID3"): for a document's name, the
        # document's own check decides.
        ours, reason = check_document(path, document, head)
        return Detection(TEXT if ours else None, reason)
    if by_content is not None:
        # The bytes decide how a file decodes, so they win over a wrong extension (a PNG named .mp3).
        return Detection(by_content)
    if by_name is None:
        return Detection(None)
    if _looks_like_text(head):
        return Detection(None, f"named like {by_name} ({ext}) but its content is text")
    return Detection(None, f"named like {by_name} ({ext}) but its content is not a known {by_name} format")
