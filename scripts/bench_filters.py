#!/usr/bin/env python
"""Filtered search on a big library: the filter tried on the best unfiltered hits first, against
listing every matching vector in SQLite first (what every filtered search did before).

The library is the one ``scripts/bench_search.py --kinds`` builds and keeps in ``--workdir`` (1,000
files per folder: a folder is 0.1 % of a million, ``/bench/0[0-4]*`` is half); it is built here the
same way when it is missing, with the approximate index ``auto`` gives it. Held-out query vectors come
from the same distribution. Per filter, both ways run through ``Searcher`` interleaved, query by query;
recall@10 is against the exact filtered top 10 (every allowed vector read back and scored).

    python scripts/bench_filters.py --workdir /tmp/ibsearch-bench          # reuses the 1M library
    python scripts/bench_filters.py --workdir /tmp/bench-filters --n 200000 --exact-below 50000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ibsearch.engine import Library
from ibsearch.index import SearchTuning
from ibsearch.search import Searcher

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search_kinds import Distribution, build_library, load, say  # noqa: E402

K = 10
# (label, Searcher filter); path_of puts 1,000 files in each folder /bench/NNNN/.
FILTERS = [
    ("0.1 % (one folder, prefix)", {"path_prefix": "/bench/0003"}),
    ("2 % (glob)", {"path_glob": "/bench/00[0-1]*"}),
    ("10 % (glob)", {"path_glob": "/bench/00*"}),
    ("50 % (glob)", {"path_glob": "/bench/0[0-4]*"}),
    ("90 % (glob)", {"path_glob": "/bench/0[0-8]*"}),
]


def exact_truth(lib: Library, queries: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The exact top ``K`` ids among ``allowed`` for each query (stored vectors read in chunks)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(allowed), 50_000):
        ids, vectors = lib.indexes.fetch(allowed[start : start + 50_000])
        scores = queries @ vectors.T
        best_s = np.concatenate([best_s, scores], axis=1)
        best_i = np.concatenate([best_i, np.broadcast_to(ids, scores.shape)], axis=1)
        top = np.argsort(-best_s, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(best_s, top, 1), np.take_along_axis(best_i, top, 1)
    return best_i


def measure(lib: Library, queries: np.ndarray, label: str, options: dict) -> str:
    searchers = {post: Searcher(lib, tuning=SearchTuning(post_filter=post)) for post in (True, False)}
    under, glob = options.get("path_prefix"), options.get("path_glob")
    started = time.perf_counter()
    allowed = lib.store.vectors.select_ids("vision", under=under, glob=glob)
    listing_ms = (time.perf_counter() - started) * 1e3
    truth = exact_truth(lib, queries, allowed)
    paths = {int(i): row.path for i, row in lib.store.vectors.rows(np.unique(truth).tolist()).items()}
    times: dict[bool, list[float]] = {True: [], False: []}
    recalls: dict[bool, list[float]] = {True: [], False: []}
    for q, want in zip(queries, truth, strict=True):
        expected = {paths[int(i)] for i in want}
        for post in (True, False):
            started = time.perf_counter()
            hits = searchers[post].query(vector=q, k=K, **options)
            times[post].append((time.perf_counter() - started) * 1e3)
            recalls[post].append(len(expected & {h.path for h in hits}) / K)
    med = {post: statistics.median(times[post]) for post in times}
    rec = {post: statistics.fmean(recalls[post]) for post in recalls}
    return (
        f"| {label} | {len(allowed):,} | {listing_ms:.0f} | **{med[True]:.1f}** | {med[False]:.1f} | "
        f"**{med[False] / med[True]:.1f}x** | {rec[True]:.3f} | {rec[False]:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/ibsearch-bench")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--data", default="mixture")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--exact-below", type=int, default=None, help="for a library built here")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    dist = Distribution(args.data, args.dim)
    queries = dist.draw(np.random.default_rng(4321), args.queries)
    say(f"# bench_filters: {args.n:,} x {args.dim} '{args.data}', k={K}, {args.queries} queries; {load()}")
    lib_dir, card = build_library(work, dist, args)
    with Library.open(lib_dir, model=str(card), device="cpu") as lib:
        if not lib.index("vision").approximate:
            lib.reindex(index="auto", exact_below=args.exact_below)
    with Library.open(lib_dir, model=str(card), device="cpu") as lib:
        facts = lib.info(0)["indexes"]["vision"]
        say(f"index: {facts['text']}")
        Searcher(lib).query(vector=queries[0], k=K)  # the index loaded once
        columns = ["filter", "matching vectors", "listing them in SQLite (ms)", "post-filter first p50 (ms)"]
        columns += [
            "listing first p50 (ms)",
            "ratio",
            "recall@10, post-filter first",
            "recall@10, listing first",
        ]
        say("\n| " + " | ".join(columns) + " |")
        say("|---|---|---|---|---|---|---|---|")
        for label, options in FILTERS:
            say(measure(lib, queries, label, options))
    say(f"\n# {load()}")


if __name__ == "__main__":
    main()
