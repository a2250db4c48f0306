"""The text of RTF documents, read by hand: RTF is a small token language, and what a reader sees is
the text outside the destinations that hold fonts, colours, styles, metadata and pictures.

Characters come as ``\\'hh`` bytes in the document's code page (``\\ansicpg``) or as ``\\uN`` with
``\\ucN`` fallback characters after each, which are skipped.
"""

from __future__ import annotations

import re

from ...errors import MediaError
from .markup import TextBuilder

_TOKEN = re.compile(r"\\([a-zA-Z]+)(-?\d+)? ?|\\'([0-9a-fA-F]{2})|\\(.)|([{}])|[\r\n]+|([^\\{}\r\n]+)", re.S)
# Destinations whose text is not the document's (tables of fonts, colours, styles; metadata; pictures).
_SKIPPED = frozenset(
    "fonttbl colortbl stylesheet info pict object header headerl headerr headerf footer footerl footerr "
    "footerf themedata colorschememapping datastore latentstyles listtable listoverridetable rsidtbl "
    "generator xmlnstbl filetbl revtbl fldinst nonshppict userprops mmathPr".split()
)
_SYMBOLS = {
    "emdash": "\u2014",
    "endash": "\u2013",
    "lquote": "\u2018",
    "rquote": "\u2019",
    "ldblquote": "\u201c",
    "rdblquote": "\u201d",
    "bullet": "\u2022",
    "tab": "\t",
}
_CONTROL = {"~": "\u00a0", "_": "\u2011", "-": "", "\\": "\\", "{": "{", "}": "}"}
_PARAGRAPHS = frozenset({"par", "sect", "page", "row"})
_CODE_PAGES = {"ansi": "cp1252", "mac": "mac_roman", "pc": "cp437", "pca": "cp850"}


class _Group:
    def __init__(self, skip: bool, fallback: int) -> None:
        self.skip, self.fallback = skip, fallback  # hidden; characters after \uN to drop


def _decoded(raw: bytearray, codepage: str) -> str:
    try:
        return raw.decode(codepage, errors="replace")
    except LookupError:
        return raw.decode("cp1252", errors="replace")


def rtf_text(data: bytes, name: str, limit: int) -> str:
    """The visible text of an RTF file's bytes, at most ``limit`` characters."""
    source = data.decode("latin-1")
    if not source.lstrip("\ufeff \t\r\n").startswith("{\\rtf"):
        raise MediaError(name, "not an RTF document (it does not start with {\\rtf)")
    out, stack, group = TextBuilder(limit), [], _Group(False, 1)
    codepage, pending, to_drop = "cp1252", bytearray(), 0
    for token in _TOKEN.finditer(source):
        word, number, hexbyte, symbol, brace, text = token.groups()
        if hexbyte is None and pending:
            out.add(_decoded(pending, codepage) if not group.skip else "")
            pending.clear()
        if out.full:
            break
        if brace == "{":
            stack.append(group)
            group = _Group(group.skip, group.fallback)
        elif brace == "}":
            group = stack.pop() if stack else group
        elif to_drop and (hexbyte or text):
            to_drop -= 1
            if text and len(text) > 1 and not group.skip:
                out.add(text[1:])
        elif symbol == "*" or word in _SKIPPED:
            group.skip = True
        elif group.skip:
            continue
        elif hexbyte:
            pending.append(int(hexbyte, 16))
        elif symbol in ("\r", "\n"):
            out.paragraph()  # a backslash at a line's end is \par (TextEdit writes it so)
        elif text or symbol:
            out.add(text or _CONTROL.get(symbol, ""))
        elif word == "u" and number:
            out.add(chr(int(number) % 65536))
            to_drop = group.fallback
        elif word == "uc" and number:
            group.fallback = int(number)
        elif word == "ansicpg" and number:
            codepage = f"cp{number}"
        elif word in _CODE_PAGES:
            codepage = _CODE_PAGES[word]
        elif word in _PARAGRAPHS:
            out.paragraph()
        elif word == "line":
            out.line()
        elif word in _SYMBOLS:
            out.add(_SYMBOLS[word])
    return out.text()


__all__ = ["rtf_text"]
