"""Documents as text (issue 20): every kind written here by the test, ingested through the real CLI
as text, its file vector the text tower's reading of the head of the extracted text.

Random weights carry no meaning, but equal token ids give equal vectors: a query equal to the
extracted text (whitespace aside: the tokenizer folds runs of it into one space) finds its file
first with a score of 1.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import run_json

from ibsearch.encoder.media.detect import TEXT, detect
from ibsearch.encoder.media.text import read_document, read_text
from ibsearch.errors import MediaError

PAGES = ["Page one about apples.", "Page two about boats.", "Page three about comets."]


def pdf_bytes(pages: list[str]) -> bytes:
    """A PDF written in its own syntax: one Helvetica line per page (an empty string: a page without text)."""
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET" if text else ""
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        resources = "<< /Font << /F1 3 0 R >> >>"
        page = f"/Parent 2 0 R /MediaBox [0 0 612 792] /Resources {resources} /Contents {len(objects)} 0 R"
        objects.append(f"<< /Type /Page {page} >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = io.BytesIO(b"%PDF-1.4\n")
    out.seek(0, io.SEEK_END)
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1"))
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def zipped(members: dict[str, str | bytes], stored_first: str | None = None) -> bytes:
    """A zip archive of ``members`` (text as UTF-8); ``stored_first`` goes first, uncompressed (ODF, EPUB)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if stored_first is not None:
            archive.writestr(zipfile.ZipInfo(stored_first), members[stored_first], zipfile.ZIP_STORED)
        for name, data in members.items():
            if name != stored_first:
                archive.writestr(name, data)
    return out.getvalue()


HTML = (
    "<!DOCTYPE html><html><head><title>Lighthouse keeper</title><style>p { color: red }</style>"
    "<script>var secret = 'never indexed';</script></head><body><h1>Harbour log</h1>"
    "<p>The lamp was lit at dusk &amp; kept\n   till dawn.</p><noscript></noscript></body></html>"
)
XHTML = (
    '<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head>'
    "<title>Tide table</title></head><body><p>High water at noon.</p><p>Low water at six.</p></body></html>"
)
W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
DOCX = {
    "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"/>',
    "word/document.xml": f'<?xml version="1.0"?><w:document {W}><w:body><w:p><w:r><w:t>Quarterly</w:t></w:r>'
    '<w:r><w:t xml:space="preserve"> report</w:t></w:r></w:p><w:p><w:r><w:t>Sales rose in spring.</w:t>'
    "</w:r><w:r><w:instrText>PAGE</w:instrText></w:r></w:p></w:body></w:document>",
}
ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
)
ODT = {
    "mimetype": "application/vnd.oasis.opendocument.text",
    "content.xml": f'<?xml version="1.0"?><office:document-content {ODF_NS}><office:body><office:text>'
    "<text:h>Garden plan</text:h><text:p>Tomatoes by the<text:s/>south wall.</text:p>"
    "</office:text></office:body></office:document-content>",
}
EPUB = {
    "mimetype": "application/epub+zip",
    "META-INF/container.xml": '<?xml version="1.0"?><container version="1.0" '
    'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
    '<rootfile full-path="OEBPS/book.opf" media-type="application/oebps-package+xml"/>'
    "</rootfiles></container>",
    "OEBPS/book.opf": '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
    '<manifest><item id="a" href="one.xhtml" media-type="application/xhtml+xml"/>'
    '<item id="b" href="text/two.xhtml" media-type="application/xhtml+xml"/></manifest>'
    '<spine><itemref idref="b"/><itemref idref="a"/></spine></package>',
    # stored in the other order than the spine reads them: the spine decides
    "OEBPS/one.xhtml": XHTML.replace("Tide table", "Chapter two").replace("High water at noon.", "The end."),
    "OEBPS/text/two.xhtml": XHTML.replace("Tide table", "Chapter one"),
}
RTF = (
    r"{\rtf1\ansi\ansicpg1252\deff0{\fonttbl{\f0 Times New Roman;}}{\colortbl;\red0\green0\blue0;}"
    r"{\info{\title Hidden title}}{\*\generator Hand 1.0;}\f0\fs24 Caf\'e9 au lait\par"
    "\n\\\nCosts 3 \\u8364? today.\\\n}"  # a backslash ending a line is a paragraph too (TextEdit)
)
MALLARD = (
    '<?xml version="1.0" encoding="utf-8"?>\n<!-- licence comment -->\n'
    '<page xmlns="http://projectmallard.org/1.0/" type="topic" id="print">\n  <info>\n'
    '    <link type="guide" xref="index"/>\n    <credit><name>Someone Else</name></credit>\n'
    "    <desc>Metadata only.</desc>\n  </info>\n  <title>Print a file</title>\n"
    "  <p>Press <key>Ctrl</key>+<key>P</key> to print.</p>\n"
    "  <steps>\n    <item><p>Choose a printer.</p></item>\n  </steps>\n</page>\n"
)
DOCBOOK = (
    '<?xml version="1.0"?>\n<!DOCTYPE article PUBLIC "-//OASIS//DTD DocBook XML V4.5//EN" '
    '"http://www.oasis-open.org/docbook/xml/4.5/docbookx.dtd">\n<article><title>Backup guide</title>'
    "<para>Copy the files nightly &mdash; or weekly.</para><remark>editor note</remark></article>\n"
)
LATIN1 = "Déjà vu: le café crème est très apprécié à Noël, même après le goûter.\n"
CP1252 = "He said “hello” — it cost 5 €.\nThe naïve café’s menu.\n"
UTF16 = "A note saved by Notepad: 日本語 and Ümlauts.\n"

#: file name -> (bytes written, the text that reading it must give)
DOCUMENTS: dict[str, tuple[bytes, str]] = {
    "pages.pdf": (pdf_bytes(PAGES), "\n\n".join(PAGES)),
    "manual.pdf.gz": (gzip.compress(pdf_bytes(["Compressed manual page."])), "Compressed manual page."),
    "log.html": (
        HTML.encode(),
        "Lighthouse keeper\n\nHarbour log\n\nThe lamp was lit at dusk & kept till dawn.",
    ),
    "index.html.gz": (
        gzip.compress(HTML.replace("log", "archive").encode()),
        "Lighthouse keeper\n\nHarbour archive\n\nThe lamp was lit at dusk & kept till dawn.",
    ),
    "tides.xhtml": (XHTML.encode(), "Tide table\n\nHigh water at noon.\n\nLow water at six."),
    "report.docx": (zipped(DOCX), "Quarterly report\n\nSales rose in spring."),
    "garden.odt": (zipped(ODT, "mimetype"), "Garden plan\n\nTomatoes by the south wall."),
    "book.epub": (
        zipped(EPUB, "mimetype"),
        "Chapter one\n\nHigh water at noon.\n\nLow water at six.\n\n"
        "Chapter two\n\nThe end.\n\nLow water at six.",
    ),
    "menu.rtf": (RTF.encode("ascii"), "Café au lait\n\nCosts 3 € today."),
    "print.page": (MALLARD.encode(), "Print a file\n\nPress Ctrl+P to print.\n\nChoose a printer."),
    "backup.xml": (DOCBOOK.encode(), "Backup guide\n\nCopy the files nightly — or weekly."),
    "latin1.txt": (LATIN1.encode("latin-1"), LATIN1),
    "windows.txt": (CP1252.encode("cp1252"), CP1252),
    "notepad.txt": (UTF16.encode("utf-16"), UTF16),
    "readme.txt.gz": (gzip.compress(b"A compressed plain note."), "A compressed plain note."),
}


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for name, (data, _) in DOCUMENTS.items():
        (root / name).write_bytes(data)
    (root / "settings.xml").write_text('<?xml version="1.0"?><config><key>value</key></config>')
    (root / "archive.tar.gz").write_bytes(gzip.compress(b"not a document"))
    return root


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_each_document_kind_reads_as_its_visible_text_in_reading_order(documents: Path, name: str):
    path = documents / name
    assert detect(str(path)).kind == TEXT
    assert read_document(path).text == DOCUMENTS[name][1]
    assert read_text(path) == DOCUMENTS[name][1]


def test_a_pdf_keeps_where_each_page_begins(tmp_path: Path):
    path = tmp_path / "pages.pdf"
    path.write_bytes(pdf_bytes(PAGES))
    doc = read_document(path)
    assert len(doc.page_starts) == 3 and doc.page_starts[0] == 0
    for number, (start, text) in enumerate(zip(doc.page_starts, PAGES, strict=True), 1):
        assert doc.text[start:].startswith(text)
        assert doc.page_of(start) == number and doc.page_of(start + len(text) - 1) == number


def test_other_xml_and_other_gz_files_are_not_taken_for_documents(documents: Path):
    for name in ("settings.xml", "archive.tar.gz"):
        found = detect(str(documents / name))
        assert found.kind is None and found.reason is None, name


def test_a_file_named_like_a_document_but_holding_something_else_is_reported(tmp_path: Path):
    liars = {
        "notes.pdf": b"just words",
        "letter.docx": b"just words",
        "menu.rtf": b"just words",
        "page.html.gz": b"<p>not compressed</p>",
        "wide.txt": "no byte-order mark".encode("utf-16-le"),
    }
    for name, data in liars.items():
        (tmp_path / name).write_bytes(data)
        found = detect(str(tmp_path / name))
        assert found.kind is None and found.reason, (name, found)


def test_bytes_without_a_name_are_plain_text_as_a_query_is():
    assert read_text("<p>Caf\u00e9 &amp; %PDF-</p>".encode()) == "<p>Caf\u00e9 &amp; %PDF-</p>"


def test_every_document_is_indexed_as_text_and_found_by_its_own_text(documents: Path, lib_args: list[str]):
    summary = run_json("ingest", documents, *lib_args)
    assert summary["failed"] == [] and summary["added"] == len(DOCUMENTS), summary
    for name, (_, text) in DOCUMENTS.items():
        hits = run_json("query", "--text", " ".join(text.split()), "--target", "text", "--k", "1", *lib_args)
        assert hits[0]["path"] == str(documents / name), (name, hits)
        assert hits[0]["score"] == pytest.approx(1.0, abs=2e-3), name


def blocked_ingest(tmp_path: Path, folder: Path, lib_args: list[str], module: str) -> dict:
    """``ibsearch ingest --json`` in a subprocess where ``import module`` fails (as if not installed)."""
    site = tmp_path / "blocked"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "ibsearch", "ingest", str(folder), *lib_args, "--workers", "0", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_pdf_without_pypdfium2_fails_alone_naming_the_pip_command(tmp_path: Path, lib_args: list[str]):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "pages.pdf").write_bytes(pdf_bytes(PAGES))
    (folder / "log.html").write_text(HTML)
    summary = blocked_ingest(tmp_path, folder, lib_args, "pypdfium2")
    assert summary["added"] == 1
    [failed] = summary["failed"]
    assert failed["path"] == str(folder / "pages.pdf")
    assert "pip install 'ibsearch[documents]'" in failed["reason"], failed


def test_a_scanned_pdf_without_a_text_layer_fails_with_a_clear_reason(tmp_path: Path, lib_args: list[str]):
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "scan.pdf").write_bytes(pdf_bytes(["", ""]))
    summary = run_json("ingest", folder, *lib_args)
    [failed] = summary["failed"]
    assert "no text layer" in failed["reason"] and "scanned" in failed["reason"], failed


def zip_bomb() -> bytes:
    return zipped(
        {"[Content_Types].xml": "<Types/>", "word/document.xml": b"<w:document>" + b" " * (80 << 20)}
    )


HOSTILE: dict[str, tuple[bytes, str]] = {
    "bomb.docx": (zip_bomb(), "MiB"),
    "bomb.html.gz": (gzip.compress(b"<p>" + b"a" * (80 << 20)), "MiB"),
    "laughs.page": (
        b'<?xml version="1.0"?><!DOCTYPE page [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b'<page xmlns="http://projectmallard.org/1.0/"><p>&b;</p></page>',
        "entit",
    ),
    "passwd.page": (
        b'<?xml version="1.0"?><!DOCTYPE page [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<page xmlns="http://projectmallard.org/1.0/"><p>&x;</p></page>',
        "entit",
    ),
    "deep.page": (b'<page xmlns="http://projectmallard.org/1.0/">' + b"<p>" * 100_000 + b"</page>", "nested"),
    "broken.docx": (b"PK\x03\x04" + b"\x00" * 100, "docx"),
    "broken.pdf": (b"%PDF-1.4\nnot really\n", "PDF"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_document_fails_alone_with_a_clear_reason(tmp_path: Path, name: str):
    data, fragment = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MediaError) as caught:
        read_document(path)
    assert name in str(caught.value) and fragment.lower() in caught.value.reason.lower(), caught.value.reason
    assert "root:" not in str(caught.value)


def test_a_document_over_the_size_limit_is_refused_without_reading_it(tmp_path: Path):
    path = tmp_path / "huge.pdf"
    with open(path, "wb") as fh:
        fh.write(b"%PDF-1.4\n")
        fh.truncate(1 << 30)  # a sparse 1 GiB file: nothing is written, nothing may be read
    with pytest.raises(MediaError, match="MiB"):
        read_document(path)
