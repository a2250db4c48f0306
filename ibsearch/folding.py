"""Near-duplicates folded: a hit whose vector is within a threshold of a better hit of the same
modality folds into it (``Hit.similar``: "and 4 similar"); and the groups of near-identical files of a
library (``ibsearch duplicates``)."""

from __future__ import annotations

from .hits import Hit
from .library import LibraryResources
from .options import SearchOptions


def fold_similar(library: LibraryResources, hits: list[Hit], opts: SearchOptions) -> list[Hit]:
    """``hits`` with each near-duplicate of a better hit folded into it (``opts.fold``; skeleton:
    unchanged)."""
    return hits


__all__ = ["fold_similar"]
