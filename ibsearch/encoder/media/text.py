"""Text notes and documents as ImageBind text input: a file's text, tokenized.

Every document kind (plain text in any common encoding, PDF, HTML, DOCX, ODT, EPUB, RTF, Mallard and
DocBook help pages, each also gzip-compressed) is read here into one plain text: :func:`read_document`
gives all of it (with where PDF pages begin) for passages, :func:`read_text` its head for the file's
vector. Only the first 77 tokens of a text count (the text tower's context), so the head is far more
than 77 tokens can take, and for plain text only that many bytes are read.

Hostile documents fail alone: a file is read only up to :data:`MAX_DOCUMENT_BYTES` (a compressed one
may not expand beyond that either), and no more text than that is gathered.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

import torch

from ...errors import MediaError
from .charsets import decode_text
from .decode import Source, checked_source, source_name
from .doc_formats import HTML, PDF, PLAIN, RTF, SNIFF_BYTES, XML, DocumentName, document_name, xml_dialect
from .markup import html_text
from .packages import package_text
from .pdf_text import pdf_pages
from .rtf import rtf_text
from .safe_xml import help_page_text
from .tokenizer import tokenize

MAX_TEXT_BYTES = 64 * 1024  # far more than 77 tokens
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # the most of one document read for its passages


@dataclass(frozen=True)
class DocumentText:
    """The whole text of a document, for cutting into passages: ``page_starts`` holds the character
    offset at which each page begins (page 1 first) for paged documents (PDF), and is empty otherwise."""

    text: str
    page_starts: tuple[int, ...] = ()

    def page_of(self, offset: int) -> int | None:
        """The page (from 1) holding character ``offset``, or None for a document without pages."""
        if not self.page_starts:
            return None
        return max(1, sum(1 for start in self.page_starts if start <= offset))


def _read_bytes(src: Source, name: str, limit: int, *, whole: bool) -> bytes:
    """At most ``limit`` bytes of ``src``; when ``whole``, MediaError for a source larger than that."""
    source = checked_source(src, name)
    too_big = f"larger than {limit >> 20} MiB, the most of one document ibsearch reads"
    try:
        if isinstance(source, str):
            if whole and os.stat(source).st_size > limit:
                raise MediaError(name, too_big)
            with open(source, "rb") as fh:
                raw = fh.read(limit + 1)
        else:
            raw = source.read(limit + 1)
    except OSError as exc:
        raise MediaError(name, f"cannot read: {exc.strerror or exc}", transient=True) from None
    if len(raw) > limit and whole:
        raise MediaError(name, too_big)
    return raw[:limit]


def _gunzip(raw: bytes, name: str, limit: int, *, whole: bool) -> bytes:
    """The content of gzip-compressed ``raw``: at most ``limit`` bytes (``whole``: MediaError beyond)."""
    try:
        data = zlib.decompressobj(wbits=31).decompress(raw, limit + 1)
    except zlib.error as exc:
        raise MediaError(name, f"damaged gzip data ({exc})") from None
    if len(data) > limit and whole:
        raise MediaError(
            name, f"expands to more than {limit >> 20} MiB, the most of one document ibsearch reads"
        )
    return data[:limit]


def _kind(src: Source, name: str) -> DocumentName:
    """What a source is read as: by its path's name (or the name given); plain text for bytes."""
    path = os.fspath(src) if isinstance(src, (str, os.PathLike)) else name
    return document_name(path) or DocumentName(PLAIN)


def _extract(src: Source, name: str | None, limit: int, *, whole: bool) -> DocumentText:
    name = name or source_name(src)
    kind = _kind(src, name)
    # Plain text may be cut anywhere (a head, or the first MAX_DOCUMENT_BYTES of a huge log); every
    # other format must be read whole to be read at all, so a bigger one fails.
    plain = kind.format == PLAIN
    budget = limit if plain and not whole else MAX_DOCUMENT_BYTES
    data = _read_bytes(src, name, MAX_DOCUMENT_BYTES if kind.gzipped else budget, whole=not plain)
    if kind.gzipped:
        data = _gunzip(data, name, budget, whole=not plain)
    if kind.format == PDF:
        found = DocumentText(*pdf_pages(data, name, limit))
    elif plain:
        found = DocumentText(decode_text(data, name, complete=len(data) < budget)[:limit])
    else:
        found = DocumentText(_markup_text(kind.format, data, name, limit))
    if not found.text.strip():
        raise MediaError(name, "the text file is empty" if plain else "the document holds no text")
    return found


def _markup_text(fmt: str, data: bytes, name: str, limit: int) -> str:
    if fmt == HTML:
        return html_text(data, name, limit)
    if fmt == RTF:
        return rtf_text(data, name, limit)
    if fmt == XML:
        dialect = xml_dialect(data[:SNIFF_BYTES])
        if dialect is None:
            raise MediaError(name, "an XML file that is neither a Mallard page nor a DocBook document")
        return help_page_text(data, name, dialect, limit)
    return package_text(fmt, data, name, limit, MAX_DOCUMENT_BYTES)


def read_text(src: Source, *, name: str | None = None, limit: int = MAX_TEXT_BYTES) -> str:
    """The head of a document's text (path, bytes or binary file): its first ``limit`` characters
    (for plain text, of its first ``limit`` bytes, a character cut at the end left out).

    Raises :class:`MediaError` for a file that is not text in a known encoding, not the document its
    name says, too large, or holds only white space.
    """
    return _extract(src, name, limit, whole=False).text


def read_document(src: Source, *, name: str | None = None) -> DocumentText:
    """The whole text of a document (up to :data:`MAX_DOCUMENT_BYTES`), for its passages; for a PDF
    with where each page begins."""
    return _extract(src, name, MAX_DOCUMENT_BYTES, whole=True)


def load_text(src: Source, *, name: str | None = None) -> torch.Tensor:
    """One text file -> its ``(77,)`` int64 token ids (see :func:`read_text`)."""
    return tokenize([read_text(src, name=name)])[0]


__all__ = ["MAX_DOCUMENT_BYTES", "MAX_TEXT_BYTES", "DocumentText", "load_text", "read_document", "read_text"]
