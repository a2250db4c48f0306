"""XML documents read safely, and the text of the XML vocabularies read as documents.

Help pages and office files come from anywhere, so the parser (the standard library's expat, driven
by hand: no tree is built) refuses what lets XML reach outside its own bytes or multiply them: any
entity declaration (the "billion laughs", and ``SYSTEM`` entities that would read local files) and
external DTDs and parameter entities, which are never loaded. Nesting deeper than :data:`MAX_DEPTH`
fails the file. Entities of a DTD that is not read (DocBook's ``&mdash;``) are taken as HTML's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html.entities import html5
from typing import NoReturn
from xml.parsers import expat

from ...errors import MediaError
from .doc_formats import MALLARD
from .markup import TextBuilder

MAX_DEPTH = 512  # elements nested in one another; prose never comes near
Start = Callable[[str, dict[str, str]], None]  # (local name, attributes) of an element that begins


class _Stop(Exception):
    """Raised inside a handler to stop parsing early (the text wanted is gathered)."""


@dataclass(frozen=True)
class XmlRules:
    """How a vocabulary's elements read: by local name (namespaces dropped)."""

    blocks: frozenset[str]  # elements that are paragraphs (a break before and after)
    hidden: frozenset[str] = frozenset()  # elements whose text is not shown (metadata, notes to editors)
    text_in: frozenset[str] = frozenset()  # if set, text counts only inside these (DOCX's runs)
    spaces: frozenset[str] = frozenset()  # empty elements that stand for a space or tab
    breaks: frozenset[str] = frozenset()  # empty elements that stand for a line break


def _rules(blocks: str, hidden: str = "", text_in: str = "", spaces: str = "", breaks: str = "") -> XmlRules:
    """:class:`XmlRules` from space-separated local names, field by field."""
    return XmlRules(*(frozenset(words.split()) for words in (blocks, hidden, text_in, spaces, breaks)))


MALLARD_RULES = _rules(
    "page section title subtitle p item list steps terms tree table tr td th code screen note figure "
    "example quote synopsis desc cite listing links",
    "info comment",
)
DOCBOOK_RULES = _rules(
    "book article chapter part appendix preface section sect1 sect2 sect3 sect4 sect5 simplesect "
    "title subtitle para simpara formalpara listitem varlistentry term entry row programlisting "
    "screen literallayout synopsis cmdsynopsis funcsynopsis note tip warning caution important "
    "refentry refnamediv refpurpose refsynopsisdiv refsect1 refsect2 refsect3 refsection example "
    "figure caption blockquote epigraph abstract glossentry glossdef question answer step address",
    "remark indexterm",
)
DOCX_RULES = _rules("p", "instrText delText", "t", "tab", "br cr")
ODT_RULES = _rules(
    "p h list-item table-cell", "tracked-changes annotation note-citation", "", "s tab", "line-break"
)


def walk_xml(
    data: bytes,
    name: str,
    start: Start,
    end: Callable[[str], None] = lambda tag: None,
    text: Callable[[str], None] = lambda data: None,
) -> None:
    """Parse ``data`` (named ``name`` in errors), calling ``start``/``end`` per element by local
    name and ``text`` with character data; a handler may raise :class:`_Stop` to end early.

    Raises :class:`MediaError` for XML that is not well formed, declares entities or nests too deep.
    """
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = [0]

    def refuse(*_: object) -> NoReturn:
        raise MediaError(
            name,
            "the XML declares entities, which ibsearch refuses (they can read local "
            "files or expand without bound)",
        )

    def opened(tag: str, attrs: dict[str, str]) -> None:
        depth[0] += 1
        if depth[0] > MAX_DEPTH:
            raise MediaError(name, f"XML elements nested more than {MAX_DEPTH} deep: not a document")
        start(tag.rpartition("}")[2], attrs)

    def closed(tag: str) -> None:
        depth[0] -= 1
        end(tag.rpartition("}")[2])

    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SkippedEntityHandler = lambda entity, is_parameter: text(html5.get(entity + ";", ""))
    parser.StartElementHandler, parser.EndElementHandler = opened, closed
    parser.CharacterDataHandler = text
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except _Stop:
        pass
    except expat.ExpatError as exc:
        raise MediaError(
            name, f"not well-formed XML ({expat.ErrorString(exc.code)}, line {exc.lineno})"
        ) from None


def xml_into(data: bytes, name: str, rules: XmlRules, out: TextBuilder) -> None:
    """Add the text of an XML document read by ``rules`` to ``out``."""
    hidden, inside = [0], [0]  # depth in hidden elements, in ``text_in`` elements

    def start(tag: str, attrs: dict[str, str]) -> None:
        if out.full:
            raise _Stop
        hidden[0] += tag in rules.hidden
        inside[0] += tag in rules.text_in
        if tag in rules.blocks:
            out.paragraph()
        elif tag in rules.breaks:
            out.line()
        elif tag in rules.spaces:
            out.add("\t" if tag == "tab" else " ")

    def end(tag: str) -> None:
        hidden[0] -= tag in rules.hidden
        inside[0] -= tag in rules.text_in
        if tag in rules.blocks:
            out.paragraph()

    def text(data: str) -> None:
        if not hidden[0] and (inside[0] or not rules.text_in):
            out.add(data)

    walk_xml(data, name, start, end, text)
    out.paragraph()


def help_page_text(data: bytes, name: str, dialect: str, limit: int) -> str:
    """The text of a Mallard page or a DocBook document, at most ``limit`` characters."""
    out = TextBuilder(limit)
    xml_into(data, name, MALLARD_RULES if dialect == MALLARD else DOCBOOK_RULES, out)
    return out.text()


__all__ = [
    "DOCBOOK_RULES",
    "DOCX_RULES",
    "MALLARD_RULES",
    "MAX_DEPTH",
    "ODT_RULES",
    "XmlRules",
    "help_page_text",
    "walk_xml",
    "xml_into",
]
