"""The text layer of PDF files, page by page (pypdf: BSD-licensed, pure Python, no dependencies;
the optional extra ``documents``).

A PDF without a text layer (a scan: each page a picture of text) fails with that reason. Its pages
are not indexed as pictures: a file is one kind with one set of modalities decided before it is read,
and the vision tower's reading of a page of print says little about what it says (that needs OCR).
"""

from __future__ import annotations

import io

from ...errors import MediaError

MISSING = "reading PDF text needs pypdf: pip install 'ibsearch[documents]' (or pip install pypdf)"
SEPARATOR = "\n\n"  # between pages, as between paragraphs


def pdf_pages(data: bytes, name: str, limit: int) -> tuple[str, tuple[int, ...]]:
    """A PDF's text (pages apart by a blank line, at most ``limit`` characters) and the character
    offset at which each page begins, page 1 first (pages past the limit are not read)."""
    try:
        import pypdf
    except ImportError:
        raise MediaError(name, MISSING) from None
    pages: list[str] = []
    starts: list[int] = []
    size = 0
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise MediaError(name, "the PDF is encrypted with a password")
        for page in reader.pages:
            if size >= limit:
                break
            text = (page.extract_text() or "").strip()
            starts.append(size)
            pages.append(text)
            size += len(text) + len(SEPARATOR)
    except MediaError:
        raise
    except (
        Exception
    ) as exc:  # pypdf raises many kinds of errors (its own, ValueError, KeyError...) on damaged files
        raise MediaError(name, f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    if not any(text for text in pages):
        raise MediaError(
            name,
            "the PDF has no text layer (a scanned document? its pages are pictures, "
            "and ibsearch reads no text from pictures)",
        )
    return SEPARATOR.join(pages)[:limit], tuple(starts)


__all__ = ["MISSING", "pdf_pages"]
