"""Documents that are zip archives of XML: DOCX (``word/document.xml``), ODT (``content.xml``) and
EPUB (the XHTML chapters its package file lists, in its spine's reading order).

An archive is read through a byte budget: a member that expands beyond what is left of
``MAX_DOCUMENT_BYTES`` (a zip bomb) fails the file instead of filling memory.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
import zlib
from urllib.parse import unquote

from ...errors import MediaError
from .doc_formats import DOCX, EPUB, ODT
from .markup import TextBuilder, decode_html, html_into
from .safe_xml import DOCX_RULES, ODT_RULES, walk_xml, xml_into

_MEMBERS = {DOCX: "word/document.xml", ODT: "content.xml"}
_XHTML = ("application/xhtml+xml", "text/html")


class Package:
    """A zip document open for reading its members within ``budget`` bytes in all."""

    def __init__(self, data: bytes, name: str, label: str, budget: int) -> None:
        self.name, self.label, self.budget = name, label, budget
        try:
            self.archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise MediaError(name, f"not a readable {label} document (damaged zip archive: {exc})") from None

    def read(self, member: str) -> bytes:
        """The bytes of ``member``; MediaError if it is missing, damaged or over the budget."""
        try:
            with self.archive.open(member) as fh:
                data = fh.read(self.budget + 1)
        except KeyError:
            raise MediaError(self.name, f"not a {self.label} document: it has no {member}") from None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
            raise MediaError(self.name, f"not a readable {self.label} document ({member}: {exc})") from None
        if len(data) > self.budget:
            raise MediaError(
                self.name,
                f"its {member} expands to more than {self.budget >> 20} MiB "
                "(the most of one document ibsearch reads): a zip bomb?",
            )
        self.budget -= len(data)
        return data


def _epub_chapters(package: Package) -> list[str]:
    """The members of an EPUB's chapters (XHTML) in reading order (the package file's spine)."""
    rootfiles: list[str] = []
    walk_xml(
        package.read("META-INF/container.xml"),
        package.name,
        lambda tag, attrs: rootfiles.append(attrs.get("full-path", "")) if tag == "rootfile" else None,
    )
    if not rootfiles or not rootfiles[0]:
        raise MediaError(package.name, "not an EPUB: META-INF/container.xml names no package file")
    opf = rootfiles[0]
    items: dict[str, tuple[str, str]] = {}
    spine: list[str] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag == "item":
            items[attrs.get("id", "")] = (attrs.get("href", ""), attrs.get("media-type", ""))
        elif tag == "itemref":
            spine.append(attrs.get("idref", ""))

    walk_xml(package.read(opf), package.name, start)
    folder = posixpath.dirname(opf)
    chapters = [items[ref] for ref in spine if ref in items]
    return [
        posixpath.normpath(posixpath.join(folder, unquote(href))) for href, kind in chapters if kind in _XHTML
    ]


def package_text(fmt: str, data: bytes, name: str, limit: int, budget: int) -> str:
    """The text of a DOCX, ODT or EPUB file's bytes, at most ``limit`` characters, reading at most
    ``budget`` bytes out of the archive."""
    package = Package(data, name, fmt.upper(), budget)
    out = TextBuilder(limit)
    if fmt == EPUB:
        for chapter in _epub_chapters(package):
            if out.full:
                break
            html_into(decode_html(package.read(chapter), name), out)
    else:
        xml_into(package.read(_MEMBERS[fmt]), name, DOCX_RULES if fmt == DOCX else ODT_RULES, out)
    return out.text()


__all__ = ["Package", "package_text"]
