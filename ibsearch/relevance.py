"""Calibrated relevance: a hit's raw score (a cosine) mapped to a relevance that means the same for
every pair of query kind and target modality (ImageBind's cosines live on different scales per pair),
so that hits of several modalities interleave and one threshold means one thing (README "Relevance").
"""

from __future__ import annotations

from .hits import Hit
from .library import LibraryResources
from .options import SearchOptions
from .terms import Term


class Calibration:
    """Relevance of ``library``'s hits for a query (skeleton: hits keep their order by raw score)."""

    def __init__(self, library: LibraryResources) -> None:
        self.library = library

    def apply(self, terms: list[Term], hits: list[Hit], opts: SearchOptions) -> list[Hit]:
        """``hits`` with their relevance set, best first by relevance, those below
        ``opts.min_relevance`` left out."""
        return hits


__all__ = ["Calibration"]
