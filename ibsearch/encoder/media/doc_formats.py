"""Which files are documents read as text: the format told by the name, checked against the first bytes.

A name says the format (``.pdf``, ``.html``, ``.docx``...; ``manual.pdf.gz`` is a gzip-compressed
PDF) and the first bytes must agree, so that a file named like a document but holding something
else is reported. XML is a document only in the two help-page vocabularies whose text is prose
(Mallard, DocBook), told by the root element: other XML (settings, data) is not ours.
"""

from __future__ import annotations

import codecs
import os
import re
import zlib
from dataclasses import dataclass

PLAIN, PDF, HTML, DOCX, ODT, EPUB, RTF, XML = "plain", "pdf", "html", "docx", "odt", "epub", "rtf", "xml"
MALLARD, DOCBOOK = "mallard", "docbook"

#: The extension of each document format (after a ``.gz``, the inner name's).
FORMATS: dict[str, str] = {
    **dict.fromkeys([".txt", ".md", ".markdown"], PLAIN),
    **dict.fromkeys([".html", ".htm", ".xhtml"], HTML),
    **dict.fromkeys([".page", ".xml"], XML),
    ".pdf": PDF,
    ".docx": DOCX,
    ".odt": ODT,
    ".epub": EPUB,
    ".rtf": RTF,
}
SNIFF_BYTES = 4096  # enough for an XML prolog (declaration, licence comment, DOCTYPE) before the root
_ZIP = b"PK\x03\x04"
_UNICODE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # also the start of UTF-32's
_PROLOG = re.compile(r"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>)", re.S)
_ROOT = re.compile(r"\s*<([A-Za-z_][\w.:-]*)([^>]*)")
# The roots of DocBook 4 documents (no namespace) that hold prose.
_DOCBOOK_ROOTS = {
    "book",
    "article",
    "chapter",
    "part",
    "set",
    "section",
    "sect1",
    "refentry",
    "reference",
    "appendix",
    "preface",
    "glossary",
}


@dataclass(frozen=True)
class DocumentName:
    """What a document's name says: its format, and whether it is gzip-compressed."""

    format: str
    gzipped: bool = False


def document_name(name: str) -> DocumentName | None:
    """The document format that ``name`` announces, or None for a name of no document format."""
    base = os.path.basename(name).lower()
    gzipped = base.endswith(".gz")
    found = FORMATS.get(os.path.splitext(base[:-3] if gzipped else base)[1])
    return None if found is None else DocumentName(found, gzipped)


def looks_like_text(head: bytes) -> bool:
    """True for bytes of text in some common encoding: a UTF-16/32 byte-order mark, or no NUL byte."""
    return head.startswith(_UNICODE_BOMS) or b"\x00" not in head


def xml_dialect(head: bytes) -> str | None:
    """:data:`MALLARD` or :data:`DOCBOOK` for the first bytes of such an XML document, else None."""
    text = head.decode("utf-16" if head.startswith(_UNICODE_BOMS) else "utf-8", errors="replace")
    text, pos = text.lstrip("\ufeff"), 0
    while prolog := _PROLOG.match(text, pos):
        if prolog.end() == pos:
            break
        pos = prolog.end()
    root = _ROOT.match(text, pos)
    if root is None:
        return None
    tag, attrs = root.group(1).rpartition(":")[2], root.group(2)
    if tag == "page" and "projectmallard.org" in attrs:
        return MALLARD
    if "docbook.org/ns/docbook" in attrs or ("xmlns" not in attrs and tag in _DOCBOOK_ROOTS):
        return DOCBOOK
    return None


def _problem(fmt: str, head: bytes) -> str | None:
    """Why ``head`` cannot begin a ``fmt`` document, or None if it can."""
    if fmt == PDF:
        return None if b"%PDF-" in head[:1024] else "named like a PDF but it does not start like one"
    if fmt in (DOCX, ODT, EPUB):
        return (
            None
            if head.startswith(_ZIP)
            else f"named like a {fmt.upper()} document but it is not a zip archive"
        )
    if fmt == RTF:
        return None if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{\\rtf") else "named .rtf but not RTF"
    if looks_like_text(head):
        return None
    return "named like a text file but its content is not text in a known encoding"


def head_of(path: str, gzipped: bool) -> bytes:
    """The first :data:`SNIFF_BYTES` of a file, of its decompressed content when ``gzipped`` (best effort)."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES if not gzipped else 16 * SNIFF_BYTES)
    if not gzipped:
        return head
    try:
        return zlib.decompressobj(wbits=31).decompress(head, SNIFF_BYTES)
    except zlib.error:
        return b""


def check_document(path: str, kind: DocumentName, head: bytes) -> tuple[bool, str | None]:
    """Whether ``path`` (named like a ``kind`` document, ``head``: its first bytes) is one to read.

    ``(True, None)``: read it; ``(False, reason)``: it is named like one but is not (a bad file);
    ``(False, None)``: not a document of ours (XML of another vocabulary).
    """
    if kind.gzipped and not head.startswith(b"\x1f\x8b"):
        return False, "named .gz but not gzip-compressed"
    if kind.gzipped or kind.format == XML:
        try:
            head = head_of(path, kind.gzipped)
        except OSError as exc:
            return False, f"cannot open: {exc.strerror or exc}"
    if kind.format == XML:
        return xml_dialect(head) is not None, None
    reason = _problem(kind.format, head) if head or not kind.gzipped else None
    return reason is None, reason


__all__ = [
    "DOCBOOK",
    "DOCX",
    "EPUB",
    "FORMATS",
    "HTML",
    "MALLARD",
    "ODT",
    "PDF",
    "PLAIN",
    "RTF",
    "SNIFF_BYTES",
    "XML",
    "DocumentName",
    "check_document",
    "document_name",
    "head_of",
    "looks_like_text",
    "xml_dialect",
]
