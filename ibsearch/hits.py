"""Hit assembly: the best vector ids of a search back to files, as :class:`Hit` results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .files import path_fields
from .modality import modality_of_key

if TYPE_CHECKING:
    from .store import PassageSpan, Store


@dataclass(frozen=True)
class Hit:
    """One result: a file (or a stretch of it: ``start``/``end`` in seconds, or a text's ``passage``) and
    its score."""

    path: str
    score: float
    modality: str
    metadata: dict[str, Any] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    passage: PassageSpan | None = None  # a passage of a text (segments): its text and character span

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            **path_fields(self.path),
            "score": round(float(self.score), 6),
            "modality": self.modality,
            "metadata": self.metadata,
        }
        if self.start is not None:
            data["start"], data["end"] = self.start, self.end
        if self.passage is not None:
            span = self.passage
            data["passage"] = {"text": span.text, "char_start": span.char_start, "char_end": span.char_end,
                               "page": span.page}  # fmt: skip
        return data


def assemble_hits(store: Store, found: list[tuple[float, int]], k: int, per_file: bool) -> list[Hit]:
    """The best ``k`` of ``found`` (``(score, vector id)``, best first) as hits; with ``per_file``
    (segments), the best segment of each file only."""
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
        hits.append(Hit(row.path, score, modality, row.info, row.start, row.end, row.passage))
        if len(hits) == k:
            break
    return hits


__all__ = ["Hit", "assemble_hits"]
