"""Hit assembly: the best vector ids of a search back to files, as :class:`Hit` results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .files import path_fields
from .modality import modality_of_key
from .options import relevance_level

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
            data["similar"] = [
                {**path_fields(h.path), "score": round(float(h.score), 6)} for h in self.similar
            ]
        if self.start is not None:
            data["start"], data["end"] = self.start, self.end
        if self.passage is not None:
            span = self.passage
            data["passage"] = {"text": span.text, "char_start": span.char_start, "char_end": span.char_end,
                               "page": span.page}  # fmt: skip
        return data


def assemble_hits(store: Store, found: list[tuple[float, int]], k: int | None, per_file: bool) -> list[Hit]:
    """The best ``k`` of ``found`` (``(score, vector id)``, best first; None: all) as hits; with
    ``per_file`` (segments), the best segment of each file only."""
    rows = store.vectors.rows([i for _, i in found])
    hits: list[Hit] = []
    seen_files: set[int] = set()
    for score, vid in found:
        row = rows.get(vid)
        if row is None:
            continue  # deleted by a concurrent ingest since the index was read
        if per_file and row.file_id in seen_files:
            continue  # the best segment of each file only
        seen_files.add(row.file_id)
        modality = modality_of_key(row.modality)
        hits.append(
            Hit(row.path, score, modality, row.info, row.start, row.end, row.passage,
                taken=row.info.get("taken"), file_id=row.file_id, vector_id=vid)
        )  # fmt: skip
        if len(hits) == k:
            break
    return hits


__all__ = ["KEYWORDS", "MEANING", "Hit", "assemble_hits"]
