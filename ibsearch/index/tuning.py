"""What a search may be tuned by: the one value that benchmarks and tests change, passed per search.

The defaults are what ibsearch measured best (BENCHMARKS.md). A :class:`SearchTuning` travels with each
search (``Searcher(lib, tuning=...)`` hands it to every index it searches) instead of being set on a
shared object, so two searchers of one library can be tuned differently side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Candidates per wanted hit when a filter is tried on an approximate index's unfiltered hits first.
POST_FILTER = 16
#: ... which probes this many times the lists the index probes: hits that deep down its ranking need them
#: to be as right as its top k (recall@10 0.935 against 0.97 for a 10 % filter at a million vectors).
POST_FILTER_NPROBE = 4
#: Candidates at most for that (k up to 256); a longer list of hits is filtered inside the index.
POST_FILTER_MOST = 4096
#: An exact index that a filter's first look leaves short looks this many times deeper among the same
#: search's candidates (the product ranks every vector anyway) before the filter is listed: a 1 % date
#: range at 100,000 files passes 10 of 2,560 candidates where listing it read every file's media info.
POST_FILTER_DEEPER = 16
#: With any IDSelector, FAISS's exact search leaves BLAS for its scalar loop. From this many queries on,
#: a filtered exact search instead runs BLAS over gathered blocks of the allowed vectors (still exact,
#: still only allowed vectors scored). Measured crossover on 1M x 1024: between 10 and 100 (BENCHMARKS.md).
FILTERED_BLAS_MIN_QUERIES = 32
#: Up to this many queries, an exact search is one BLAS product over the vectors on every core and a
#: partial sort (``index.exact``), filtered or not; FAISS's flat search runs one query on one core.
EXACT_PRODUCT_MOST = 64


@dataclass(frozen=True)
class SearchTuning:
    """How searches are run (never what they find out of what is allowed: every setting keeps the hits
    of exact search where exact search was promised)."""

    post_filter: bool = True  # try a filter on an index's best unfiltered hits first (see Retrieval)
    post_filter_factor: int = POST_FILTER  # candidates per wanted hit for that
    post_filter_nprobe: int = POST_FILTER_NPROBE  # times the index's nprobe for that
    post_filter_most: int = POST_FILTER_MOST  # candidates at most for that
    post_filter_deeper: int = POST_FILTER_DEEPER  # an exact index's second look, this many times deeper
    full_scan_below: int | None = None  # filters allowing at most this many: exact; None: the library's
    filtered_blas_min_queries: int = FILTERED_BLAS_MIN_QUERIES  # gathered BLAS for filtered exact batches
    exact_product_most: int = EXACT_PRODUCT_MOST  # exact searches of this many queries at most: .exact


#: The tuning a search gets when none is given.
DEFAULT_TUNING = SearchTuning()

__all__ = [
    "DEFAULT_TUNING",
    "EXACT_PRODUCT_MOST",
    "FILTERED_BLAS_MIN_QUERIES",
    "POST_FILTER",
    "POST_FILTER_DEEPER",
    "POST_FILTER_MOST",
    "POST_FILTER_NPROBE",
    "SearchTuning",
]
