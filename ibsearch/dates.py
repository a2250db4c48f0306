"""Dates: the date a photo or video was taken (else its modification time), as hits are sorted by it
(``--sort date``); filters by date are media-info ranges (``SearchOptions.info_ranges``).

The date itself is read at ingest (:mod:`ibsearch.encoder.media.taken`) into each file's media info:
``taken`` (Unix seconds) and ``taken_from`` ("exif", "quicktime" or "file").
"""

from __future__ import annotations

from .hits import Hit
from .options import RELEVANCE_LEVELS, SearchOptions

#: Hits of each index a search sorted by date reads: the newest are looked for among this many of the
#: most relevant (a date sort that read only the page's worth would sort the best few, not find the newest).
DATE_DEPTH = 1000
#: The relevance a hit needs to be sorted by date when no ``min_relevance`` is given: sorting by date puts
#: the least relevant hit first as readily as the best, so the faint ones are left out.
DATE_FLOOR = "low"


def sort_hits(hits: list[Hit], opts: SearchOptions) -> list[Hit]:
    """``hits`` in the order ``opts.sort`` asks: relevance, as they are; date, newest first, among the hits
    at or above ``opts.min_relevance`` (else the :data:`DATE_FLOOR` level), ties in their order, undated
    hits last. A hit without a relevance (none was computed) is not left out."""
    if opts.sort != "date":
        return hits
    floor = RELEVANCE_LEVELS[DATE_FLOOR] if opts.min_relevance is None else float(opts.min_relevance)
    kept = [h for h in hits if h.relevance is None or h.relevance >= floor]
    return sorted(kept, key=lambda h: (h.taken is None, -(h.taken or 0.0)))


def search_depth(opts: SearchOptions, depth: int) -> int:
    """How many of each index's best vectors a search with ``opts`` reads, given the ``depth`` its page
    needs: deeper when sorted by date."""
    return max(depth, DATE_DEPTH) if opts.sort == "date" else depth


__all__ = ["DATE_DEPTH", "DATE_FLOOR", "search_depth", "sort_hits"]
