"""The visible text of marked-up documents, in reading order: HTML and XHTML (the standard library's
``html.parser``), with block elements as paragraph breaks so that passages can follow them.

:class:`TextBuilder` gathers text the way a reader sees it (every markup reader here shares it): runs
of white space fold into one space, a line break stays a line break, the end of a block is a blank
line, and gathering stops at a limit of characters.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from .charsets import decode_text

# Elements that begin and end a block of text (a paragraph break either side).
HTML_BLOCKS = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody td tfoot th "
    "thead title tr ul".split()
)
# Elements whose content a reader never sees.
HTML_HIDDEN = frozenset("script style template noscript iframe object svg math".split())
_LINE = "\x00"  # a line break among the text (line ends in markup are only white space)
_CHUNK = 64 * 1024  # the parsers are fed this much at a time, so a full builder stops them early
_DECLARED = re.compile(rb"""(?:charset|encoding)\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


class TextBuilder:
    """A document's text as it is read: :meth:`add` text, :meth:`line` and :meth:`paragraph` breaks."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # characters gathered at most (more is dropped: see ``full``)
        self.paragraphs: list[str] = []
        self.size = 0
        self._current: list[str] = []

    @property
    def full(self) -> bool:
        """True once the text has reached ``limit`` characters: readers may stop there."""
        return self.size >= self.limit

    def add(self, text: str) -> None:
        if not self.full:
            self._current.append(text)

    def line(self) -> None:
        self.add(_LINE)

    def paragraph(self) -> None:
        lines = (" ".join(line.split()) for line in "".join(self._current).split(_LINE))
        block = "\n".join(line for line in lines if line)
        self._current = []
        if block and not self.full:
            self.paragraphs.append(block)
            self.size += len(block) + 2

    def text(self) -> str:
        """Everything gathered, paragraphs apart by a blank line, cut at ``limit`` characters."""
        self.paragraph()
        return "\n\n".join(self.paragraphs)[: self.limit]


class _HtmlText(HTMLParser):
    def __init__(self, out: TextBuilder) -> None:
        super().__init__(convert_charrefs=True)
        self.out = out
        self.hidden = 0  # depth inside elements a reader does not see

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in HTML_HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.out.line()
        elif tag in HTML_BLOCKS:
            self.out.paragraph()

    def handle_endtag(self, tag: str) -> None:
        if tag in HTML_HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in HTML_BLOCKS:
            self.out.paragraph()

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.add(data)


def html_into(markup: str, out: TextBuilder) -> None:
    """Add the visible text of an HTML or XHTML document to ``out`` (scripts and styles left out)."""
    parser = _HtmlText(out)
    for start in range(0, len(markup), _CHUNK):
        if out.full:
            break
        parser.feed(markup[start : start + _CHUNK])
    parser.close()
    out.paragraph()


def decode_html(data: bytes, name: str) -> str:
    """An HTML file's bytes as text, in the charset it declares (``<meta charset>``, XML declaration)."""
    declared = _DECLARED.search(data[:2048])
    return decode_text(data, name, complete=True, declared=declared.group(1).decode() if declared else None)


def html_text(data: bytes, name: str, limit: int) -> str:
    """The visible text of an HTML/XHTML file's bytes, at most ``limit`` characters."""
    out = TextBuilder(limit)
    html_into(decode_html(data, name), out)
    return out.text()


__all__ = ["HTML_BLOCKS", "HTML_HIDDEN", "TextBuilder", "decode_html", "html_into", "html_text"]
