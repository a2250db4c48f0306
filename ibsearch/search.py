"""Any-to-any search: :class:`Searcher` composes the parts of a query's way back to hits.

- :class:`~ibsearch.query_vector.QueryEmbedder`: the terms to one query vector (a cache plugs in);
- :class:`~ibsearch.retrieval.Retrieval`: which indexes, filters and the best vector ids of each;
- :func:`~ibsearch.hits.assemble_hits`: the ids back to files as :class:`Hit` results;
- then the hits are ranked: :class:`~ibsearch.relevance.Calibration` (relevance on one scale for every
  modality), :class:`~ibsearch.keywords.KeywordSearch` (names and texts by their words, fused in),
  :class:`~ibsearch.folding.Folding` (near-duplicates folded), :func:`~ibsearch.dates.sort_hits`
  (by date, if asked), and the page of ``k`` from ``offset`` is returned.

The query inputs (keywords of :meth:`Searcher.query`) are those of the one table
:data:`ibsearch.terms.QUERY_INPUTS`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np

from .closing import Closing
from .dates import search_depth, sort_hits
from .errors import UsageError
from .folding import Folding
from .hits import Hit, assemble_hits, moments_per_file
from .index.tuning import DEFAULT_TUNING, SearchTuning
from .keywords import KeywordSearch, meaning_terms
from .library import LibraryResources
from .options import SearchOptions
from .query_vector import QueryEmbedder, TermCache
from .relevance import Calibration
from .retrieval import Retrieval
from .terms import Term, no_input_message, python_keywords, python_terms


class Searcher(Closing):
    """Query a library: ``Searcher().query(text="a dog barking", target="vision")``.

    ``library`` is an opened :class:`~ibsearch.library.LibraryResources` or a library directory (default: the
    default library); ``model``, ``checkpoint``, ``device`` and ``precision`` are as for
    :meth:`LibraryResources.open`. Only the towers that the query's inputs need are loaded.

    ``search_device`` says where exact searches run: None (default) follows the library's device, so
    with a CUDA GPU ("auto" or "cuda") big exact indexes are searched there by a torch matrix product
    (approximate ones with faiss-gpu when it is installed), and on "cpu" by FAISS; "cpu", "cuda" or
    "auto" given here take that torch path on that device. ``tuning`` says how its searches are run
    (benchmarks compare settings with it; the default is what was measured best).

    ``cache`` is asked for each term's vector before its tower (a
    :class:`~ibsearch.query_vector.TermCache`).
    """

    def __init__(
        self,
        library: LibraryResources | str | os.PathLike[str] | None = None,
        *,
        model: str | None = None,
        checkpoint: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        search_device: str | None = None,
        tuning: SearchTuning = DEFAULT_TUNING,
        cache: TermCache | None = None,
    ) -> None:
        if isinstance(library, LibraryResources):
            self.library = library
            self._owned = False
        else:
            self.library = LibraryResources.open(
                library, model=model, checkpoint=checkpoint, device=device, precision=precision
            )
            self._owned = True
        follow = None if str(self.library.device).lower() == "cpu" else self.library.device
        self.library.indexes.search_device = follow if search_device is None else search_device
        self.tuning = tuning
        self.embedder = QueryEmbedder(self.library, cache)
        self.retrieval = Retrieval(self.library)
        self.calibration = Calibration(self.library)
        self.keywords = KeywordSearch(self.library, self.calibration)
        self.folding = Folding(self.library)

    def close(self) -> None:
        if self._owned:
            self.library.close()

    # ------------------------------------------------------------------ the Python API

    def query(
        self,
        text: Any = None,
        image: Any = None,
        audio: Any = None,
        *,
        like: Any = None,
        vector: Any = None,
        vision: Any = None,
        video: Any = None,
        depth: Any = None,
        thermal: Any = None,
        imu: Any = None,
        target: str | list[str] | None = None,
        k: int = 10,
        path_glob: str | None = None,
        path_prefix: str | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
        segments: bool = False,
        include_like: bool = False,
        min_relevance: float | str | None = None,
        keywords: bool = True,
        fold: bool = True,
        per_file: int = 1,
        after: float | str | None = None,
        before: float | str | None = None,
        sort: str = "relevance",
        offset: int = 0,
    ) -> list[Hit]:
        """Search with any mix of inputs; each keyword takes one input, a list, or ``weighted(x, w)``.

        Inputs: ``text`` strings; ``image``/``vision`` paths, bytes, PIL images or HxWx3 uint8
        arrays; ``audio`` paths or bytes; ``like`` paths of ingested files (their stored vectors);
        ``vector`` raw ``(dim,)`` arrays in the library's embedding space (weighted like the others).
        ``video`` paths (the picture of a video); ``depth``/``thermal``/``imu`` paths, bytes or arrays
        (see the README's conventions). ``target``: modality name(s) to search (``image`` is
        an alias of ``vision``; default all). The other keywords are those of :class:`SearchOptions`.
        The input keywords are the rows of :data:`ibsearch.terms.QUERY_INPUTS` offered to Python.
        """
        given = locals()  # the keywords by name: the inputs are the table's, the rest SearchOptions'
        terms = python_terms({name: given[name] for name in python_keywords()})
        return self.search(terms, SearchOptions.given([target] if isinstance(target, str) else target, given))

    def search(self, terms: list[Term], options: SearchOptions | None = None) -> list[Hit]:
        """Search with parsed :class:`Term` objects (what the CLI calls)."""
        opts = options or SearchOptions()
        if not terms:
            raise UsageError(no_input_message())
        keys = self.retrieval.keys(opts)
        query = self.embed(meaning_terms(terms, opts))
        excluded = self.retrieval.excluded(terms, opts)
        depth, held = candidate_depth(opts), sum(self.library.index(key).ntotal for key in keys)
        for deeper in range(DEEPER_AT_MOST + 1):
            ranked, hits = self._ranked(terms, opts, query, keys, excluded, depth)
            short = len(hits) < opts.offset + opts.k <= len(ranked)  # folding took up some of the page
            if not short or depth >= held or deeper == DEEPER_AT_MOST:
                break
            depth *= 4
        hits = sort_hits(hits, opts)
        return hits[opts.offset : opts.offset + opts.k]

    def _ranked(
        self,
        terms: list[Term],
        opts: SearchOptions,
        query: np.ndarray,
        keys: list[str],
        excluded: set[int],
        depth: int,
    ) -> tuple[list[Hit], list[Hit]]:
        """The best ``depth`` candidates of each index, as hits ranked by relevance with keywords fused in,
        and those hits with near-duplicates folded."""
        sampled = self.calibration.asking(keys)
        found = self.retrieval.search(query, keys, replace(opts, k=depth), excluded, self.tuning, sampled)
        hits = assemble_hits(self.library.store, found, None, per_file=moments_per_file(opts))
        hits = self.calibration.apply(query, hits, opts, sampled)
        hits = self.keywords.fuse(
            terms, opts, hits, query=query, keys=keys, excluded=excluded, depth=depth, sampled=sampled
        )
        return hits, self.folding.fold_similar(hits, opts)

    def embed(self, terms: list[Term]) -> np.ndarray:
        """The combined, L2-normalized query vector ``(dim,)`` float32 of ``terms``."""
        return self.embedder.embed(terms)


#: How many times a search ranks 4 times more candidates when folding leaves its page short (64x).
DEEPER_AT_MOST = 3


def candidate_depth(opts: SearchOptions) -> int:
    """How many of each index's best vectors a search with ``opts`` ranks first: the page asked for and
    the hits before it (with segments, retrieval counts the moments that one file gives, adjacent ones
    merged, as assembly will; sorted by date, :data:`~ibsearch.dates.DATE_DEPTH` at least). When
    folding leaves fewer hits than that, the search ranks 4 times as many, up to
    :data:`DEEPER_AT_MOST` times: ranking twice as many every time cost a 100,000-item search 1.8 ms
    (BENCHMARKS.md "The added cost of ranking"), for a page that near-duplicates rarely empty."""
    return search_depth(opts, opts.k + opts.offset)


__all__ = ["DEEPER_AT_MOST", "Hit", "SearchOptions", "Searcher", "candidate_depth"]
