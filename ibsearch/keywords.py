"""Keywords with meaning: text terms also find files by the words of their names, folders and texts
(SQLite FTS5), fused with the vector results (README "Keywords and meaning")."""

from __future__ import annotations

from .hits import Hit
from .library import LibraryResources
from .options import SearchOptions
from .terms import Term


class KeywordSearch:
    """Keyword matches of a query, fused into its hits (skeleton: hits unchanged)."""

    def __init__(self, library: LibraryResources) -> None:
        self.library = library

    def fuse(self, terms: list[Term], opts: SearchOptions, hits: list[Hit]) -> list[Hit]:
        """``hits`` with the files whose words match the text terms fused in (``opts.keywords``), each
        hit's ``sources`` saying what found it."""
        return hits


__all__ = ["KeywordSearch"]
