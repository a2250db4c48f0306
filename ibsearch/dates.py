"""Dates: the date a photo or video was taken (else its modification time), as hits are sorted by it
(``--sort date``); filters by date are media-info ranges (``SearchOptions.info_ranges``)."""

from __future__ import annotations

from .hits import Hit
from .options import SearchOptions


def sort_hits(hits: list[Hit], opts: SearchOptions) -> list[Hit]:
    """``hits`` in the order ``opts.sort`` asks (relevance: as they are; skeleton: unchanged)."""
    return hits


__all__ = ["sort_hits"]
