"""Keywords with meaning: text terms also find files by the words of their names, folders and texts
(SQLite FTS5, ``store.words``), fused with the vector results (README "Keywords and meaning").

A text term is read for its words: ``"over the sea"`` (in double quotes) is a phrase that a file's
words must hold in that order, ``-word`` leaves out every file whose name, folder or text holds the
word, and the other words find the files that hold any of them (ranked by bm25, a name weighing most);
a word or phrase held by more than :data:`RANKED_AT_MOST` files is left to meaning.
What the text tower embeds is the text without the quotes and without the ``-word`` exclusions. A term
of negative weight (``-0.5=people``) is meaning only: its words find and exclude nothing.

The two rankings are fused by score: a hit's calibrated relevance (``relevance``, in [0, 1]) plus
:data:`KEYWORD_WEIGHT` x its bm25 over the query's best, so a file that both find rises above either
alone, and a weak match (a common word) adds little. On a small labelled set this ranked as well as
reciprocal rank fusion (RRF) where meaning is good and clearly better where it is poor
(``scripts/bench_keywords.py``, BENCHMARKS.md); RRF (``1 / (60 + rank)`` in each list) is what is left
when hits have no relevance (no calibration). A file found by its words alone gets a real score: the
cosine of its best stored vector among the searched indexes with the query, made a relevance by the
calibration stage, so it can be compared and cut like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .errors import UsageError
from .hits import KEYWORDS, MEANING, Hit, assemble_hits, moments_per_file
from .index.exact import ScoreSample
from .library import LibraryResources
from .modality import TEXT
from .options import SearchOptions
from .relevance import Calibration
from .terms import Term

#: What the best keyword match adds to a relevance (in [0, 1]) in calibrated fusion: a file both find
#: with the query's best words ranks above every file that meaning alone finds.
KEYWORD_WEIGHT = 1.0
#: The most files a word or phrase may be held by and still find and rank files: bm25 scores every
#: holder, which for a word of a million file names ("jpg") takes seconds, and such a word says little
#: about any one file (BENCHMARKS.md "Keywords at 1,000,000 file names"). Commoner ones are left to
#: meaning; ``-word`` exclusions hold however common the word is.
RANKED_AT_MOST = 1_000
#: RRF's constant (the fusion without relevances): how much a first place outweighs a tenth (the value
#: of its inventors, Cormack et al.).
RRF_K = 60

# A quoted phrase, or a -word (a letter after the minus: "-0.5" and a lone "-" stay text).
_PHRASE = re.compile(r'"([^"]*)"')
_EXCLUDED = re.compile(r"(?<!\S)-([^\W\d_][^\s\"]*)")
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class KeywordQuery:
    """What the words of a query's text terms ask for: any of ``words``, every one of ``phrases``,
    none of ``excluded``."""

    words: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def finding(self) -> str | None:
        """The FTS5 expression of the files the query finds (None: it names no word to find)."""
        phrases = [_quoted(p) for p in self.phrases]
        words = [_quoted(w) for w in self.words]
        if not phrases:
            return " OR ".join(words) or None
        # Every phrase must be there; the loose words only rank (bm25 counts every phrase of the
        # expression, and "p AND (p OR w)" holds whenever p does).
        required = " AND ".join(phrases)
        return f"{required} AND ({' OR '.join([phrases[0], *words])})" if words else required

    def exclusion(self) -> str | None:
        """The FTS5 expression of the files to leave out (None: none)."""
        return " OR ".join(_quoted(w) for w in self.excluded) or None

    def expression(self) -> str | None:
        """The files found and not left out, as one FTS5 expression."""
        finding, exclusion = self.finding(), self.exclusion()
        if finding is None or exclusion is None:
            return finding
        return f"({finding}) NOT ({exclusion})"

    def keeping(self, rare: Callable[[str], bool]) -> KeywordQuery:
        """The query with only the words and phrases whose FTS5 expression ``rare`` accepts (the
        exclusions kept)."""
        words = tuple(w for w in self.words if rare(_quoted(w)))
        return KeywordQuery(words, tuple(p for p in self.phrases if rare(_quoted(p))), self.excluded)

    def __add__(self, other: KeywordQuery) -> KeywordQuery:
        return KeywordQuery(
            self.words + other.words, self.phrases + other.phrases, self.excluded + other.excluded
        )


def read_text(text: str) -> tuple[KeywordQuery, str]:
    """The words a text term asks for, and the text its meaning is embedded from (quotes and
    ``-word`` exclusions taken out; the text as given when it has neither)."""
    phrases = tuple(p.strip() for p in _PHRASE.findall(text) if _WORD.search(p))
    excluded = tuple(_EXCLUDED.findall(text))
    rest = _EXCLUDED.sub(" ", _PHRASE.sub(" ", text))
    words = tuple(w for w in rest.split() if _WORD.search(w))
    query = KeywordQuery(words, phrases, excluded)
    if not phrases and not excluded and '"' not in text:
        return query, text
    meaning = " ".join(_EXCLUDED.sub(" ", text).replace('"', " ").split())
    if not meaning:
        raise UsageError(
            f"the text term {text!r} only leaves words out; add words to search for (or --no-keywords)"
        )
    return query, meaning


def _quoted(words: str) -> str:
    """``words`` as an FTS5 string: matched as the phrase of its tokens, never read as syntax."""
    return '"' + words.replace('"', '""') + '"'


def _is_text(term: Term) -> bool:
    return term.kind == TEXT and isinstance(term.value, str)


def meaning_terms(terms: list[Term], opts: SearchOptions) -> list[Term]:
    """``terms`` as the towers embed them: text terms without their quotes and exclusions (with
    ``opts.keywords``; without it, as given)."""
    if not opts.keywords:
        return terms
    return [replace(t, value=read_text(t.value)[1]) if _is_text(t) else t for t in terms]


class KeywordSearch:
    """Keyword matches of a query in ``library``, fused into its hits; a file found by keywords alone
    gets its relevance from ``calibration``."""

    def __init__(
        self, library: LibraryResources, calibration: Calibration, ranked_at_most: int = RANKED_AT_MOST
    ) -> None:
        self.library = library
        self.calibration = calibration
        self.ranked_at_most = ranked_at_most

    def fuse(
        self,
        terms: list[Term],
        opts: SearchOptions,
        hits: list[Hit],
        *,
        query: np.ndarray,
        keys: list[str],
        excluded: set[int],
        depth: int,
        sampled: dict[str, ScoreSample] | None = None,
    ) -> list[Hit]:
        """``hits`` (best first) with the files whose words match the text terms fused in
        (``opts.keywords``), each hit's ``sources`` saying what found it, and the files a ``-word``
        excludes left out. ``query`` is the query vector, ``keys`` the index keys searched,
        ``excluded`` vector ids never returned, ``depth`` how many keyword matches are ranked,
        ``sampled`` the search's sampled scores for calibration."""
        if not opts.keywords:
            return hits
        asked = KeywordQuery()
        for term in terms:
            if _is_text(term) and term.weight > 0:
                asked += read_text(term.value)[0]
        store = self.library.store
        exclusion = asked.exclusion()
        if exclusion is not None:
            gone = store.words.among(exclusion, {h.file_id for h in hits if h.file_id is not None})
            hits = [h for h in hits if h.file_id not in gone]
        most = self.ranked_at_most
        expression = asked.keeping(lambda words: store.words.holders(words, most + 1) <= most).expression()
        if expression is None:
            return hits
        ranked = store.words.match(expression, depth)
        found = {h.file_id for h in hits}
        others = [f for f, _ in ranked if f not in found]
        alone = self._found_alone(opts, others, query, keys, excluded, sampled)
        return fuse_rankings(hits, alone, ranked)

    def _found_alone(
        self,
        opts: SearchOptions,
        file_ids: list[int],
        query: np.ndarray,
        keys: list[str],
        excluded: set[int],
        sampled: dict[str, ScoreSample] | None,
    ) -> list[Hit]:
        """Hits of the files found by keywords alone: each file's best vector among ``keys`` that
        passes the search's filters, scored by its cosine with ``query``, its relevance calibrated."""
        store = self.library.store
        ids, files, vectors = store.vectors.of_files(file_ids, keys)
        keep = ~np.isin(ids, list(excluded))
        if opts.filtered and keep.any():
            ranges = opts.info_ranges()
            passing = [
                store.vectors.select_ids(
                    k, among=ids, under=opts.path_prefix, glob=opts.path_glob, ranges=ranges
                )
                for k in keys
            ]
            keep &= np.isin(ids, np.concatenate(passing))
        ids, files, scores = ids[keep], files[keep], vectors[keep] @ query
        best: dict[int, tuple[float, int]] = {}
        for score, vector_id, file_id in zip(scores.tolist(), ids.tolist(), files.tolist(), strict=True):
            if file_id not in best or score > best[file_id][0]:
                best[file_id] = (score, vector_id)
        found = assemble_hits(
            store, sorted(best.values(), reverse=True), None, per_file=moments_per_file(opts)
        )
        return self.calibration.apply(query, [h.changed(sources=(KEYWORDS,)) for h in found], opts, sampled)


def fuse_rankings(meaning: list[Hit], alone: list[Hit], ranked: list[tuple[int, float]]) -> list[Hit]:
    """``meaning`` (hits best first) and ``alone`` (hits of files only keywords found) in the order of
    their fused score, with ``ranked`` (``(file id, bm25 strength)``, best keyword match first): the
    relevance plus :data:`KEYWORD_WEIGHT` x the strength over the query's best (calibrated fusion), or,
    when a hit has no relevance (no calibration), ``1 / (RRF_K + rank)`` summed over the two rankings
    (reciprocal rank fusion). Each hit's ``sources`` says which rankings hold it."""
    calibrated = all(h.relevance is not None for h in [*meaning, *alone])
    place = {file_id: rank for rank, (file_id, _) in enumerate(ranked, start=1)}
    strength = dict(ranked)
    best = max(strength.values(), default=0.0) or 1.0

    def by_words(hit: Hit) -> float | None:
        if hit.file_id not in place:
            return None
        if calibrated:
            return KEYWORD_WEIGHT * strength[hit.file_id] / best
        return 1.0 / (RRF_K + place[hit.file_id])

    scored: list[tuple[float, Hit]] = []
    for rank, hit in enumerate(meaning, start=1):
        score = float(hit.relevance or 0.0) if calibrated else 1.0 / (RRF_K + rank)
        extra = by_words(hit)
        if extra is not None:
            score += extra
            hit = hit.changed(sources=(MEANING, KEYWORDS))
        scored.append((score, hit))
    for hit in alone:
        extra = by_words(hit)
        if extra is not None:
            scored.append(((float(hit.relevance or 0.0) if calibrated else 0.0) + extra, hit))
    scored.sort(key=lambda item: -item[0])  # stable: ties keep the meaning order first
    return [hit for _, hit in scored]


__all__ = [
    "KEYWORD_WEIGHT",
    "RANKED_AT_MOST",
    "RRF_K",
    "KeywordQuery",
    "KeywordSearch",
    "fuse_rankings",
    "meaning_terms",
    "read_text",
]
