"""Hit assembly: the best vector ids of a search back to files, as :class:`Hit` results."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .encoder.media.taken import stored_taken
from .files import path_fields
from .modality import modality_of_key
from .options import SearchOptions, relevance_level

if TYPE_CHECKING:
    from .store import PassageSpan, Store


#: What found a hit: its vector's nearness to the query, or the words of its name or text.
MEANING = "meaning"
KEYWORDS = "keywords"


@dataclass(frozen=True)
class Hit:
    """One result: a file (or a stretch of it: ``start``/``end`` in seconds, or a text's ``passage``) and
    its score (the cosine to the query), its ``relevance`` (README "Relevance": the same scale for every
    modality), what found it (``sources``: "meaning", "keywords" or both), the near-duplicates folded
    into it (``similar``) and the date it was taken (``taken``, Unix seconds; else its modification time)."""

    path: str
    score: float
    modality: str
    metadata: dict[str, Any] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    passage: PassageSpan | None = None  # a passage of a text (segments): its text and character span
    relevance: float | None = None
    sources: tuple[str, ...] = (MEANING,)
    similar: tuple[Hit, ...] = ()
    taken: float | None = None
    file_id: int | None = None  # the library's item id of its file
    vector_id: int | None = None  # the matching vector (None: found by keywords alone)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **path_fields(self.path),
            "score": round(float(self.score), 6),
            "relevance": None if self.relevance is None else round(float(self.relevance), 6),
            "level": relevance_level(self.relevance),
            "sources": list(self.sources),
            "modality": self.modality,
            "metadata": self.metadata,
        }
        if self.taken is not None:
            data["taken"] = datetime.fromtimestamp(self.taken, timezone.utc).isoformat()
        if self.similar:
            data["similar"] = [h.folded_dict() for h in self.similar]
        if self.start is not None:
            data["start"], data["end"] = self.start, self.end
        if self.passage is not None:
            span = self.passage
            data["passage"] = {"text": span.text, "char_start": span.char_start, "char_end": span.char_end,
                               "page": span.page}  # fmt: skip
        return data

    def changed(self, **values: Any) -> Hit:
        """A copy with the fields that ``values`` names set: :func:`dataclasses.replace` without its
        ``__init__`` (6.5 against 0.8 us a call, and a search changes each of its candidates two or three
        times). The names must be fields of :class:`Hit`."""
        if not values.keys() <= _FIELDS:
            raise TypeError(f"not fields of Hit: {sorted(values.keys() - _FIELDS)}")
        twin = object.__new__(Hit)
        twin._hold({**vars(self), **values})
        return twin

    def _hold(self, every: dict[str, Any]) -> None:
        """Take ``every`` field's value (by name) as this new, empty hit's (``__setattr__`` refuses)."""
        vars(self).update(every)

    def folded_dict(self) -> dict[str, Any]:
        """What a hit folded into a better one says of itself: its path, score, relevance and span."""
        data: dict[str, Any] = {**path_fields(self.path), "score": round(float(self.score), 6)}
        data["relevance"] = None if self.relevance is None else round(float(self.relevance), 6)
        if self.start is not None:
            data["start"], data["end"] = self.start, self.end
        return data


def assemble_hits(store: Store, found: list[tuple[float, int]], k: int | None, per_file: int) -> list[Hit]:
    """The best ``k`` of ``found`` (``(score, vector id)``, best first; None: all) as hits; with
    ``per_file`` (segments: :func:`moments_per_file`), the :func:`moments` of each file (0: every hit)."""
    rows = store.vectors.rows([i for _, i in found])
    hits: list[Hit] = []
    for score, vid in found:
        row = rows.get(vid)
        if row is None:
            continue  # deleted by a concurrent ingest since the index was read
        modality = modality_of_key(row.modality)
        hits.append(
            Hit(row.path, score, modality, row.info, row.start, row.end, row.passage,
                taken=stored_taken(row.info), file_id=row.file_id, vector_id=vid)
        )  # fmt: skip
    if per_file:
        hits = moments(hits, per_file)
    return hits if k is None else hits[:k]


def moments_per_file(opts: SearchOptions) -> int:
    """How many moments of one file a search with ``opts`` returns (0: no limit, whole files)."""
    return opts.per_file if opts.segments else 0


def moments(hits: list[Hit], per_file: int) -> list[Hit]:
    """The best ``per_file`` segments of each file among ``hits`` (best first), those that overlap or
    touch merged into one span from the first start to the last end, with the best score (and its
    vector); best first. Passages of texts (no times) are kept as they are."""
    best: dict[int | str, list[Hit]] = {}
    for hit in hits:
        kept = best.setdefault(hit.path if hit.file_id is None else hit.file_id, [])
        if len(kept) < per_file:
            kept.append(hit)
    merged = [span for kept in best.values() for span in _merged_spans(kept)]
    return sorted(merged, key=lambda hit: -hit.score)  # stable: ties keep the order they came in


def _merged_spans(hits: list[Hit]) -> list[Hit]:
    timed = sorted(
        (h for h in hits if h.start is not None and h.end is not None), key=lambda h: h.start or 0.0
    )
    spans: list[Hit] = [h for h in hits if h.start is None or h.end is None]
    for hit in timed:
        last = spans[-1] if spans and spans[-1].end is not None else None
        if last is not None and hit.start is not None and hit.start <= last.end + 1e-6:  # type: ignore[operator]
            best = last if last.score >= hit.score else hit
            spans[-1] = replace(best, start=last.start, end=max(last.end, hit.end))  # type: ignore[type-var]
        else:
            spans.append(hit)
    return spans


_FIELDS = frozenset(f.name for f in fields(Hit))

__all__ = ["KEYWORDS", "MEANING", "Hit", "assemble_hits", "moments", "moments_per_file"]
