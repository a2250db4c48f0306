"""The retrieval strategy: which indexes a query searches, how its filters are applied, and the best
vector ids of each (beside :class:`~ibsearch.index_sync.IndexSet`, which holds the indexes).

Filters become the set of allowed vector ids, which FAISS applies inside the search (an ID selector),
so ``k`` hits come back whenever ``k`` matching vectors exist. On an approximate index (a big
library) the filter is first tried on the best ``post_filter_factor`` x k hits of an unfiltered
search: a broad filter keeps k of them, at the cost of a look-up per candidate instead of listing every
matching vector (a second at a million); a narrow one falls back to the filtered search. How (these
settings, and those of the index searches) is a :class:`~ibsearch.index.tuning.SearchTuning`, passed
with each search.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import UsageError
from .hits import assemble_hits, moments_per_file
from .index.exact import ScoreSample
from .index.tuning import SearchTuning
from .library import LibraryResources
from .modality import INDEX_KEYS, MODALITIES, canonical, segments_key
from .options import SearchOptions
from .terms import LIKE, Term

#: ``(score, vector id)`` pairs, best first.
Found = list[tuple[float, int]]


class Retrieval:
    """Searches ``library``'s indexes for a query vector, its filters applied."""

    def __init__(self, library: LibraryResources) -> None:
        self.library = library

    def keys(self, opts: SearchOptions) -> list[str]:
        """The index keys a search with ``opts`` reads: its targets (default: every modality held),
        whole files or segments, those that hold vectors. An empty library is an error."""
        lib = self.library
        # Which indexes hold vectors, by one index seek each: counting a million rows per query would
        # cost more than an approximate search.
        held = set(lib.store.vectors.keys_present(INDEX_KEYS))
        present = [m for m in MODALITIES if m in held]
        if not present:
            raise UsageError(f"library {str(lib.root)!r} is empty; run 'ibsearch ingest PATH' first")
        wanted = [canonical(t) for t in opts.targets] if opts.targets else present
        keys = [segments_key(m) if opts.segments else m for m in dict.fromkeys(wanted)]
        return [key for key in keys if key in held]

    def excluded(self, terms: list[Term], opts: SearchOptions) -> set[int]:
        """The vectors of the files of ``like`` terms: "more like this" means others (unless
        ``include_like``)."""
        excluded: set[int] = set()
        if not opts.include_like:
            for term in terms:
                if term.kind == LIKE:
                    stored = self.library.store.vectors.of_file(os.path.abspath(str(term.value)))
                    excluded |= {v.id for v in stored}
        return excluded

    def search(
        self,
        query: np.ndarray,
        keys: list[str],
        opts: SearchOptions,
        excluded: set[int],
        tuning: SearchTuning,
        samples: dict[str, ScoreSample] | None = None,
    ) -> Found:
        """The best matches of ``query`` in the indexes ``keys``, best first across them, searched as
        ``tuning`` says; ``samples`` (by key), when given, receive the query's scores at a sample of
        the index's vectors where the search scored them all (:class:`~.index.exact.ScoreSample`)."""
        found: Found = []
        for key in keys:
            sample = None if samples is None else samples.get(key)
            found += _IndexSearch(self.library, key, tuning, sample).best(query, opts, excluded)
        found.sort(key=lambda item: -item[0])
        return found


class _IndexSearch:
    """One index's search for one query, as ``tuning`` says."""

    def __init__(
        self, library: LibraryResources, key: str, tuning: SearchTuning, sample: ScoreSample | None = None
    ) -> None:
        self.library, self.key, self.tuning, self.sample = library, key, tuning, sample
        self.index = library.index(key)

    def best(self, query: np.ndarray, opts: SearchOptions, excluded: set[int]) -> Found:
        """The best matches in the index, filters applied inside the search (or to the best candidates of
        a search without them, when k pass: on an approximate index, and on an exact one where listing
        the filter's vectors would read every file)."""
        if not opts.filtered:
            return self._top(query, opts.k, None, per_file=moments_per_file(opts), excluded=excluded)
        ranges = opts.info_ranges()
        filters: dict[str, Any] = {"under": opts.path_prefix, "glob": opts.path_glob, "ranges": ranges}
        # A listing reads every file's row where the filter is a glob or a media-info range (SQLite's GLOB
        # and JSON of each: 150 ms at 100,000 files), so an exact index too tries its best hits first.
        lists_all = opts.path_glob is not None or bool(ranges)
        if self.tuning.post_filter and (self.index.approximate or lists_all):
            found = self._post_filtered(query, opts, excluded, filters)
            if found is not None:
                return found
        allowed = self.library.store.vectors.select_ids(self.key, **filters)
        if not len(allowed):
            return []
        return self._top(query, opts.k, allowed, per_file=moments_per_file(opts), excluded=excluded)

    def _post_filtered(
        self, query: np.ndarray, opts: SearchOptions, excluded: set[int], filters: dict[str, Any]
    ) -> Found | None:
        """The filter applied to the best hits of an unfiltered search, or None when fewer than ``k``
        (files, with ``segments``) pass and the search must be filtered inside the index instead. The
        best k that pass among the index's top candidates are the best k that pass."""
        want = opts.k * self.tuning.post_filter_factor
        if want > self.tuning.post_filter_most:
            return None  # a long list of hits: one unfiltered search that deep would cost more
        nprobe = self.index.nprobe * self.tuning.post_filter_nprobe
        # An exact search ranks every vector whatever the depth: its candidates are read once, as deep
        # as a second look may need (a narrower filter), and looked up a stretch at a time.
        deep = want if self.index.approximate else want * self.tuning.post_filter_deeper
        per_file = moments_per_file(opts)
        found = self._top(query, deep, None, per_file=per_file, excluded=excluded, nprobe=nprobe)
        store, passing, looked = self.library.store, set[int](), 0
        for upto in dict.fromkeys((want, deep)):
            among = np.array([i for _, i in found[looked:upto]], dtype=np.int64)
            passing |= set(store.vectors.select_ids(self.key, among=among, **filters).tolist())
            looked = upto
            kept = [(s, i) for s, i in found[:upto] if i in passing]
            if not per_file and len(kept) >= opts.k:
                return kept[: opts.k]  # whole files: the best k that pass (no more to assemble)
            if per_file and len(assemble_hits(store, kept, None, per_file)) >= opts.k:
                return kept
        return None

    def _top(
        self,
        query: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        per_file: int,
        excluded: set[int],
        nprobe: int | None = None,
    ) -> Found:
        """Top hits of the index, ``excluded`` ids left out; with ``per_file`` (segments), enough hits
        to give ``k`` moments, up to ``per_file`` of each file, adjacent ones merged
        (:func:`~ibsearch.hits.moments`)."""
        want = k + len(excluded)
        while True:
            scores, ids = self.index.search(
                query[None, :],
                want,
                allowed_ids=allowed,
                nprobe=nprobe,
                tuning=self.tuning,
                sample=self.sample,
            )
            held = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            found = [(s, i) for s, i in held if i not in excluded]
            if not per_file or len(held) < want:
                return found
            if len(assemble_hits(self.library.store, found, None, per_file)) >= k:
                return found
            want *= 4


__all__ = ["Retrieval"]
