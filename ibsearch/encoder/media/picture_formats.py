"""Picture formats that Pillow does not read by itself, how each is recognised, and what decodes it.

One row per format: its name as users know it, its extensions, and the optional library that
decodes it, which the ``pictures`` extra installs. Recognising a file needs no library (the ingest
walk imports this module, so nothing heavy is imported here); decoding one whose library is missing
fails for that file only, naming the format and the pip command, and as a transient failure, so
that the next ingest after the install reads it.

Pillow itself reads JPEG, PNG, GIF, WebP, BMP, TIFF, AVIF and PNM (P1-P6); PAM (P7) is read by
``pictures`` with numpy, so it needs nothing. An animated GIF or WebP is its first frame, as the
reference reads a picture (``Image.open``), and no other frame is decoded.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from types import ModuleType

from ...errors import MediaError

#: What a user runs to read every format below.
PICTURES_EXTRA = "pip install 'ibsearch[pictures]'"


@dataclass(frozen=True)
class PictureFormat:
    """A picture format beyond Pillow's own, and what decodes it."""

    name: str  # as users call it, in messages
    extensions: tuple[str, ...]
    library: str | None = None  # the module that decodes it; None: nothing to install
    package: str | None = None  # that module's distribution on PyPI


HEIF = PictureFormat("HEIC/HEIF", (".heic", ".heif", ".hif"), "pillow_heif", "pillow-heif")
JPEG_XL = PictureFormat("JPEG XL", (".jxl",), "imagecodecs", "imagecodecs")
SVG = PictureFormat("SVG", (".svg", ".svgz"), "resvg_py", "resvg-py")
RAW = PictureFormat(
    "camera RAW",
    (".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".orf", ".raf", ".rw2")
    + (".rwl", ".pef", ".srw", ".3fr", ".iiq", ".mrw", ".x3f", ".erf", ".kdc"),
    "rawpy",
    "rawpy",
)
PAM = PictureFormat("PAM", (".pam",))
FORMATS: tuple[PictureFormat, ...] = (HEIF, JPEG_XL, SVG, RAW, PAM)

# HEIF brands of a picture in HEVC (an image sequence too: its first picture is read).
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs")
_GENERIC_BRANDS = (b"mif1", b"msf1")  # HEIF or AVIF: the compatible brands say which
_JXL = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")
_ELEMENT = re.compile(rb"<(?![?!])")  # an element, past the XML declaration, comments and doctype
_RAW_HEADS = (b"FUJIFILMCCD-RAW", b"IIRO", b"IIRS", b"MMOR")  # RAF, Olympus ORF


def _heif(head: bytes) -> bool:
    if head[4:8] != b"ftyp":
        return False
    if head[8:12] in _HEIF_BRANDS:
        return True
    if head[8:12] not in _GENERIC_BRANDS:
        return False
    end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[at : at + 4] for at in range(16, end - 3, 4)}
    return not brands & {b"avif", b"avis"}  # AVIF is Pillow's own


def _markup(head: bytes) -> bool:
    """Whether ``head`` is XML whose first element is ``<svg`` (not an XHTML page holding one)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    first = _ELEMENT.search(text) if text.startswith(b"<") else None
    return first is not None and text.startswith(b"<svg", first.start())


def identify(head: bytes, name: str | None = None) -> PictureFormat | None:
    """The format of :data:`FORMATS` that a file's first bytes (``head``, 512 are plenty) and its
    ``name`` announce; None for any other file (Pillow's formats included)."""
    ext = os.path.splitext(name or "")[1].lower()
    if _heif(head):
        return HEIF
    if head.startswith(_JXL):
        return JPEG_XL
    if head[:3] in (b"P7\n", b"P7 ", b"P7\r"):
        return PAM
    named_svg = ext in SVG.extensions and (head.startswith(b"\x1f\x8b") or head.lstrip()[:1] == b"<")
    if named_svg or _markup(head):
        return SVG
    if ext in RAW.extensions or head.startswith(_RAW_HEADS) or head[4:12] == b"ftypcrx ":
        return RAW
    if head[:4] == b"II*\x00" and head[8:10] == b"CR":  # Canon CR2: a TIFF named otherwise
        return RAW
    return None


def require(fmt: PictureFormat, name: str) -> ModuleType | None:
    """Import the library that decodes ``fmt`` (None if it needs none).

    Raises a transient :class:`MediaError` naming the file, the format and the pip command when the
    library is not installed: the file is fine, and is read once the extra is installed.
    """
    if fmt.library is None:
        return None
    try:
        return importlib.import_module(fmt.library)
    except ImportError as exc:
        raise MediaError(
            name,
            f"{fmt.name} pictures need {fmt.package}, which is not installed; to read them: {PICTURES_EXTRA}",
            transient=True,
        ) from exc


__all__ = [
    "FORMATS",
    "HEIF",
    "JPEG_XL",
    "PAM",
    "PICTURES_EXTRA",
    "RAW",
    "SVG",
    "PictureFormat",
    "identify",
    "require",
]
