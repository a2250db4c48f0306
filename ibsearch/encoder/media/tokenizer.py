"""CLIP byte-level BPE tokenizer, producing the token ids ImageBind's text tower expects.

The ids are identical to the reference tokenizer (OpenAI CLIP's merges file, 49,408 tokens):
text is cleaned (ftfy, HTML entities, whitespace, lower case), split by a pre-tokenizer regex,
each piece is byte-encoded into printable characters and merged by BPE rank.
A sequence is ``[SOT] + ids`` cut to 76 entries, then ``[EOT]``, then zero padding to 77
(the reference's behaviour since November 2025; earlier versions could lose the EOT token).
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import ftfy
import regex
import torch

# The sequence length fed to the text tower, and the vocabulary size (256 bytes, 256 bytes + ``</w>``,
# 48,894 merges, 2 special tokens).
from ..inputs import TEXT_CONTEXT as CONTEXT_LENGTH
from ..inputs import TEXT_VOCAB as VOCAB_SIZE

#: Id of ``<|startoftext|>``, the first token of every sequence.
SOT_ID = 49406
#: Id of ``<|endoftext|>``; the text tower pools at its (first) position.
EOT_ID = 49407

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

_SPECIAL = {"<|startoftext|>": SOT_ID, "<|endoftext|>": EOT_ID}
_N_MERGES = VOCAB_SIZE - 2 * 256 - len(_SPECIAL)
_END_OF_WORD = "</w>"
# Special-token literals first (users may type them and the reference honours them), then
# contractions, letter runs, single digits, and runs of other non-space characters.
_PRETOKENIZER = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")
# Per-instance memo of word -> ids; cleared when it grows past this many entries.
_MEMO_LIMIT = 200_000


def _byte_alphabet() -> list[tuple[int, str]]:
    """Pair each byte value with a printable character, in vocabulary order.

    Bytes that are already visible Latin-1 characters stand for themselves; the remaining 68
    (controls, space, soft hyphen, ...) are given the code points 256, 257, ... in byte order.
    The vocabulary's first 256 entries follow this list's order.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shown = set(visible)
    hidden = [b for b in range(256) if b not in shown]
    return [(b, chr(b)) for b in visible] + [(b, chr(256 + k)) for k, b in enumerate(hidden)]


def clean_text(text: str) -> str:
    """Normalize ``text`` the way the reference does before pre-tokenizing.

    Fix mojibake with ftfy, unescape HTML entities twice, collapse whitespace, lower-case.
    """
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class Tokenizer:
    """A CLIP BPE tokenizer over a merges file (by default the one shipped with ibsearch)."""

    def __init__(self, merges: Sequence[tuple[str, str]]) -> None:
        alphabet = _byte_alphabet()
        self._byte_chars = [""] * 256
        for byte, char in alphabet:
            self._byte_chars[byte] = char
        symbols = [char for _, char in alphabet]
        symbols += [char + _END_OF_WORD for _, char in alphabet]
        symbols += [a + b for a, b in merges]
        symbols += list(_SPECIAL)
        self.vocab: dict[str, int] = {s: i for i, s in enumerate(symbols)}
        # A later duplicate merge would overwrite an earlier rank, as a dict built in order does.
        self._ranks: dict[tuple[str, str], int] = {pair: i for i, pair in enumerate(merges)}
        self._memo: dict[str, list[int]] = {}

    @classmethod
    def from_file(cls, path: str | None = None) -> Tokenizer:
        """Build a tokenizer from a gzipped CLIP merges file (default: the packaged vocabulary)."""
        if path is None:
            raw = resources.files(__package__).joinpath(VOCAB_FILE).read_bytes()
        else:
            with open(path, "rb") as fh:
                raw = fh.read()
        lines = gzip.decompress(raw).decode("utf-8").split("\n")
        # Line 0 is a version header; exactly the first 48,894 merges below it are used.
        merges = [tuple(line.split()) for line in lines[1 : 1 + _N_MERGES]]
        return cls([(m[0], m[1]) for m in merges])

    def _word_ids(self, word: str) -> list[int]:
        """BPE-merge one byte-encoded pre-token and return its ids."""
        ids = self._memo.get(word)
        if ids is not None:
            return ids
        parts = list(word[:-1]) + [word[-1] + _END_OF_WORD]
        ranks = self._ranks
        while len(parts) > 1:
            best_rank = None
            best: tuple[str, str] | None = None
            for pair in zip(parts[:-1], parts[1:], strict=True):
                rank = ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best = rank, pair
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            # Merge every occurrence of the best pair, scanning left to right without overlap.
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.vocab[p] for p in parts]
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Return the BPE ids of ``text`` (no SOT/EOT, no padding, no length limit)."""
        ids: list[int] = []
        for piece in _PRETOKENIZER.findall(clean_text(text)):
            special = _SPECIAL.get(piece)
            if special is not None:
                ids.append(special)
                continue
            word = "".join(self._byte_chars[b] for b in piece.encode("utf-8"))
            ids.extend(self._word_ids(word))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Turn ids back into text (lossy: cleaning and lower-casing are not undone)."""
        if not hasattr(self, "_inverse"):
            self._inverse = {i: s for s, i in self.vocab.items()}
            self._char_bytes = {c: b for b, c in enumerate(self._byte_chars)}
        pieces = []
        for i in ids:
            if i == 0 or i == SOT_ID:
                continue
            if i == EOT_ID:
                break
            pieces.append(self._inverse[int(i)])
        text = "".join(pieces)
        words = text.split(_END_OF_WORD)
        data = [bytes(self._char_bytes[c] for c in w).decode("utf-8", errors="replace") for w in words]
        return " ".join(w for w in data if w)

    def __call__(self, texts: Sequence[str] | str, context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
        """Tokenize ``texts`` into a ``(N, context_length)`` int64 tensor.

        Each row is ``[SOT] + ids`` truncated to ``context_length - 1`` entries, then ``[EOT]``,
        then zeros. A single string gives ``(1, context_length)``.
        """
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), context_length, dtype=torch.int64)
        for row, text in enumerate(texts):
            ids = ([SOT_ID] + self.encode(text))[: context_length - 1] + [EOT_ID]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out


@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    """The packaged CLIP tokenizer, loaded once per process."""
    return Tokenizer.from_file()


def tokenize(texts: Sequence[str] | str, context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Tokenize with the packaged vocabulary: ``(N, 77)`` int64 ids, as the reference produces."""
    return default_tokenizer()(texts, context_length)
