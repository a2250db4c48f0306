"""Long text cut into passages: windows of at most 75 BPE tokens that the text tower reads whole.

The text tower sees 77 token ids (start, up to 75 tokens, end), so a note longer than that is cut
into windows, each embedded as a text segment with its character span (and page, for PDFs). The cut
is deterministic and made so that a query equal to a paragraph finds that very window:

- a paragraph (text between blank lines) is cut on its own: no window crosses a paragraph break;
- a paragraph of at most 75 tokens is exactly one window, whose text is the paragraph (white space
  at its ends left out), so a query equal to it tokenizes to the same 77 ids and, with the same
  weights, gets the same vector;
- a longer paragraph is cut into runs of whole sentences, packed greedily up to 75 tokens; each next
  window repeats the previous one's last whole sentences that fit :data:`OVERLAP_TOKENS` (the
  overlap), so a phrase near a cut is read whole by one window or the other;
- a sentence longer than a window is cut between words, and a word longer than a window into
  pieces of :data:`WORD_PIECE_CHARS` characters.

Token counts add up across white space (the tokenizer's pieces never span it), so a run's count is
the sum of its sentences'.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import regex

from ..inputs import TEXT_CONTEXT
from .text import DocumentText
from .tokenizer import default_tokenizer

#: BPE tokens a window holds at most: the tower's context less the start and end tokens.
WINDOW_TOKENS = TEXT_CONTEXT - 2
#: Whole sentences of at most this many tokens that a window shares with the one before it.
OVERLAP_TOKENS = WINDOW_TOKENS // 3
#: A word longer than a window is cut into pieces this long: a character is at most 4 UTF-8 bytes,
#: so at most 4 tokens, and 18 of them stay under 75 tokens.
WORD_PIECE_CHARS = 18

_PARAGRAPH = regex.compile(r"\S(?:.*?\S)?(?=\s*\n\s*\n|\s*\Z)", regex.DOTALL)
# A sentence runs to ., ! or ? (closing quotes and brackets included) before white space, or to the end.
_SENTENCE = regex.compile(r"\S.*?(?:[.!?\u2026][\"'\u2019\u201d)\]]*(?=\s)|\S(?=\s*\Z))", regex.DOTALL)
_WORD = regex.compile(r"\S+")


@dataclass(frozen=True)
class Passage:
    """A window of a document: its text, ``doc.text[start:end]``, and the page it begins on (PDFs)."""

    start: int  # character offset of its first character in the document's text
    end: int  # offset just past its last character
    text: str
    page: int | None = None


@dataclass(frozen=True)
class _Unit:
    """A sentence (or a piece of a long one): its span in the document and its token count."""

    start: int
    end: int
    tokens: int


def _count(text: str) -> int:
    return len(default_tokenizer().encode(text))


def _pieces(text: str, start: int, end: int) -> Iterator[_Unit]:
    """``text[start:end]`` as units of at most a window each: itself, its words, or pieces of words."""
    tokens = _count(text[start:end])
    if tokens <= WINDOW_TOKENS:
        if tokens:
            yield _Unit(start, end, tokens)
        return
    words = list(_WORD.finditer(text, start, end))
    if len(words) == 1:
        for at in range(start, end, WORD_PIECE_CHARS):
            stop = min(end, at + WORD_PIECE_CHARS)
            piece = _count(text[at:stop])
            if piece:
                yield _Unit(at, stop, piece)
        return
    for word in words:
        yield from _pieces(text, word.start(), word.end())


def _runs(units: list[_Unit]) -> Iterator[tuple[int, int]]:
    """``(first, last)`` unit indexes of each window over one paragraph's ``units`` (greedy, overlapping)."""
    first = 0
    while first < len(units):
        last, total = first, units[first].tokens
        while last + 1 < len(units) and total + units[last + 1].tokens <= WINDOW_TOKENS:
            last += 1
            total += units[last].tokens
        yield first, last
        if last == len(units) - 1:
            return
        # The next window starts at the earliest of this one's trailing sentences that fit the overlap,
        # always after this one's start (so every window moves on).
        nxt, shared = last + 1, 0
        while nxt - 1 > first and shared + units[nxt - 1].tokens <= OVERLAP_TOKENS:
            nxt -= 1
            shared += units[nxt].tokens
        first = nxt


def cut_passages(doc: DocumentText) -> list[Passage]:
    """The passages of ``doc``, in document order (none for a text without tokens); see the module."""
    text = doc.text
    passages = []
    for paragraph in _PARAGRAPH.finditer(text):
        units = [
            unit
            for sentence in _SENTENCE.finditer(text, paragraph.start(), paragraph.end())
            for unit in _pieces(text, sentence.start(), sentence.end())
        ]
        for first, last in _runs(units):
            start, end = units[first].start, units[last].end
            passages.append(Passage(start, end, text[start:end], doc.page_of(start)))
    return passages


__all__ = ["OVERLAP_TOKENS", "WINDOW_TOKENS", "Passage", "cut_passages"]
