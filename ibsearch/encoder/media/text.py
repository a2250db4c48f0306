"""Text notes as ImageBind text input: a file's text, tokenized.

Only the first 77 tokens of a text count (the text tower's context), so only the head of a file is
read: far more bytes than 77 tokens can take.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import MediaError
from .decode import Source, checked_source, source_name
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


def read_text(src: Source, *, name: str | None = None, limit: int = MAX_TEXT_BYTES) -> str:
    """The text of a UTF-8 file (path, bytes or binary file), at most its first ``limit`` bytes.

    A byte-order mark is dropped, and a multi-byte character cut at the end of the limit is left out.
    Raises :class:`MediaError` for a file that is not UTF-8 text or holds only white space.
    """
    name = name or source_name(src)
    source = checked_source(src, name)
    try:
        if isinstance(source, str):
            with open(source, "rb") as fh:
                raw = fh.read(limit)
        else:
            raw = source.read(limit)
    except OSError as exc:
        raise MediaError(name, f"cannot read: {exc.strerror or exc}", transient=True) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(raw) - 3:
            raise MediaError(name, f"not UTF-8 text (byte {exc.start})") from None
        text = raw[: exc.start].decode("utf-8-sig")
    if not text.strip():
        raise MediaError(name, "the text file is empty")
    return text


def read_document(src: Source, *, name: str | None = None) -> DocumentText:
    """The whole text of a text file (up to :data:`MAX_DOCUMENT_BYTES`), for its passages."""
    return DocumentText(read_text(src, name=name, limit=MAX_DOCUMENT_BYTES))


def load_text(src: Source, *, name: str | None = None) -> torch.Tensor:
    """One text file -> its ``(77,)`` int64 token ids (see :func:`read_text`)."""
    return tokenize([read_text(src, name=name)])[0]


__all__ = ["MAX_DOCUMENT_BYTES", "MAX_TEXT_BYTES", "DocumentText", "load_text", "read_document", "read_text"]
