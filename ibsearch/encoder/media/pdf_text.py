"""The text layer of PDF files, page by page, read with PDFium (``pypdfium2``: the PDF engine of
Chrome, BSD-3/Apache-2.0, a wheel bundling PDFium and its permissively licensed libraries; the
optional extra ``documents``). Measured on Debian's PDF manuals it reads text 12 to 16 times faster
than pure-Python pypdf (a 111-page manual: 0.7 s against 9 s), which a long manual would otherwise
spend against the per-file decode time limit; like FFmpeg for video, it runs in the decoding workers.

A PDF without a text layer (a scan: each page a picture of text) fails with that reason. Its pages
are not indexed as pictures: a file is one kind with one set of modalities decided before it is read,
and the vision tower's reading of a page of print says little about what it says (that needs OCR).
"""

from __future__ import annotations

from ...errors import MediaError

MISSING = "reading PDF text needs pypdfium2: pip install 'ibsearch[documents]' (or pip install pypdfium2)"
SEPARATOR = "\n\n"  # between pages, as between paragraphs


def pdf_pages(data: bytes, name: str, limit: int) -> tuple[str, tuple[int, ...]]:
    """A PDF's text (pages apart by a blank line, at most ``limit`` characters) and the character
    offset at which each page begins, page 1 first (pages past the limit are not read)."""
    try:
        import pypdfium2
    except ImportError:
        raise MediaError(name, MISSING) from None
    pages: list[str] = []
    starts: list[int] = []
    size = 0
    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise MediaError(name, f"not a readable PDF ({exc})") from None
    try:
        for index in range(len(document)):
            if size >= limit:
                break
            page = document[index]
            textpage = page.get_textpage()
            # PDFium ends lines with CR LF; a passage wants plain line ends.
            text = textpage.get_text_range().replace("\r\n", "\n").strip()
            textpage.close()
            page.close()
            starts.append(size)
            pages.append(text)
            size += len(text) + len(SEPARATOR)
    except pypdfium2.PdfiumError as exc:
        raise MediaError(name, f"not a readable PDF (page {len(pages) + 1}: {exc})") from None
    finally:
        document.close()
    if not any(pages):
        raise MediaError(
            name,
            "the PDF has no text layer (a scanned document? its pages are pictures, "
            "and ibsearch reads no text from pictures)",
        )
    return SEPARATOR.join(pages)[:limit], tuple(starts)


__all__ = ["MISSING", "pdf_pages"]
