"""Text notes as ImageBind text input: a file's text, tokenized.

Only the first 77 tokens of a text count (the text tower's context), so only the head of a file is
read: far more bytes than 77 tokens can take.
"""

from __future__ import annotations

import torch

from ...errors import MediaError
from .decode import Source, checked_source, source_name
from .tokenizer import tokenize

MAX_TEXT_BYTES = 64 * 1024  # far more than 77 tokens


def read_text(src: Source, *, name: str | None = None) -> str:
    """The text of a UTF-8 file (path, bytes or binary file), at most its first 64 KB.

    A byte-order mark is dropped, and a multi-byte character cut at the end of the 64 KB is left out.
    Raises :class:`MediaError` for a file that is not UTF-8 text or holds only white space.
    """
    name = name or source_name(src)
    source = checked_source(src, name)
    try:
        if isinstance(source, str):
            with open(source, "rb") as fh:
                raw = fh.read(MAX_TEXT_BYTES)
        else:
            raw = source.read(MAX_TEXT_BYTES)
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


def load_text(src: Source, *, name: str | None = None) -> torch.Tensor:
    """One text file -> its ``(77,)`` int64 token ids (see :func:`read_text`)."""
    return tokenize([read_text(src, name=name)])[0]


__all__ = ["MAX_TEXT_BYTES", "load_text", "read_text"]
