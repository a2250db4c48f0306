"""Text in any common encoding: a byte-order mark, UTF-8, a declared charset, or one detected.

Detection (charset-normalizer) judges single-byte encodings by how plausible the letters look, and on
a short Western note several code pages look equally plausible (Latin-1 French comes out as Baltic
cp1257). Windows-1252 is taken whenever it is about as plausible as the best guess: it is what such
notes are written in, and Latin-1 text reads the same in it.
"""

from __future__ import annotations

import codecs

from ...errors import MediaError

SAMPLE_BYTES = 64 * 1024  # what detection looks at: the same head for a file's vector and its passages
_WESTERN = "cp1252"
_AS_PLAUSIBLE = 0.1  # how much more "chaos" than the best guess still counts as a tie
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _is_utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A sample may end inside a multi-byte character.
        return exc.reason == "unexpected end of data" and exc.start >= len(head) - 3
    return True


def _codec(label: str | None) -> str | None:
    try:
        return codecs.lookup(label).name if label else None
    except LookupError:
        return None


def _detected(sample: bytes) -> str | None:
    from charset_normalizer import from_bytes

    matches = from_bytes(sample)
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if match.encoding == _WESTERN and match.chaos <= best.chaos + _AS_PLAUSIBLE:
            return _WESTERN
    return str(best.encoding)


def guess_encoding(sample: bytes, declared: str | None = None) -> str | None:
    """The encoding of text starting with ``sample``: its byte-order mark, else ``declared`` (a charset
    the document names, if Python knows it), else UTF-8 if it decodes, else the detected one (None: none)."""
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding
    if _codec(declared):
        return _codec(declared)
    return "utf-8" if _is_utf8(sample) else _detected(sample[:SAMPLE_BYTES])


def decode_text(data: bytes, name: str, *, complete: bool, declared: str | None = None) -> str:
    """``data`` decoded (see :func:`guess_encoding`); a byte-order mark is dropped, and when not
    ``complete`` (a head) a character cut at its end is left out. MediaError if no encoding fits."""
    encoding = guess_encoding(data[:SAMPLE_BYTES], declared)
    if encoding is None:
        raise MediaError(
            name, "not text in any encoding ibsearch recognises (UTF-8, UTF-16, Windows-1252...)"
        )
    return codecs.getincrementaldecoder(encoding)(errors="replace").decode(data, final=complete)


__all__ = ["SAMPLE_BYTES", "decode_text", "guess_encoding"]
