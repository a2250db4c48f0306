#!/usr/bin/env python
"""The added cost per query of ranking (issue 21: calibrated relevance, keywords, folding), side by side
with today's search, in one run, on libraries of 100,000 and 1,000,000 items built through ``import``.

* **today's**: what ``Searcher.search`` did before the ranking stages: the query embedded, the best
  ``k`` of each index searched (``Retrieval.search``), ``assemble_hits`` of the best ``k``.
* **ours**: the full ``Searcher.search`` with the stages on, as a user gets it (candidates
  ``candidate_depth`` deep, calibration, keywords, folding, the page); and with only some stages on
  (``keywords``/``fold`` off through ``SearchOptions``), so that each stage's share shows. A stage that
  is still a pass-through where this runs costs what a pass-through costs: the lead reruns this after
  the merge.

Both run on the same ``Searcher`` and the same queries, interleaved query by query (each variant in
turn first, after an untimed search of the query that pages its lists in), so that the load of the
machine falls on both alike; p50 and p95 per variant and the p50 added over today's. The first
query of a fresh ``Searcher`` also draws the calibration samples (a look-up per index key, then kept
while the index is unchanged): timed apart as "first query".

The library: ``--size`` items of the modelled space of ``tests/test_relevance.py`` (per-modality
offsets as ImageBind's), 85 % pictures, 10 % notes, 5 % sounds, one whole-file vector each, imported
from Parquet shards into ``--workdir`` (kept and reused by later runs: 1M x 1024 is a ~5 GB
database). Indexes as the library's default policy gives them (at 1M: the pictures approximate, the
notes and sounds exact). Queries: text-kind vectors of held-out contents, all targets, k=10.

Usage:  python scripts/bench_ranking.py [--sizes 100000 1000000] [--queries 200]
        [--workdir /tmp/ibsearch-bench-ranking]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_import import write_card  # a random-weight card of the width asked (no encoding here)
from bench_sensor_memory import cpu_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_relevance import SPACE  # noqa: E402 (the modelled space, defined once)

from ibsearch.engine import Library  # noqa: E402
from ibsearch.hits import assemble_hits  # noqa: E402
from ibsearch.ingest.commit import PREPROCESS_VERSION  # noqa: E402
from ibsearch.options import SearchOptions  # noqa: E402
from ibsearch.search import Searcher  # noqa: E402
from ibsearch.shards import ShardRow, ShardWriter  # noqa: E402
from ibsearch.terms import VECTOR, Term  # noqa: E402

DIM = 1024
SPLIT = {"vision": 0.85, "text": 0.10, "audio": 0.05}
EXTENSIONS = {"vision": "jpg", "text": "txt", "audio": "wav"}
CHUNK = 50_000
#: The variants timed: name -> SearchOptions fields (None: today's search).
VARIANTS: dict[str, dict[str, bool] | None] = {
    "today's": None,
    "calibration only": {"keywords": False, "fold": False},
    "calibration + keywords": {"keywords": True, "fold": False},
    "ours (all stages)": {"keywords": True, "fold": True},
}


def build(folder: Path, size: int) -> tuple[Path, Path]:
    """The library of ``size`` items in ``folder`` (built once: a later run reuses it) and its card."""
    folder.mkdir(parents=True, exist_ok=True)
    card = folder / "bench.json"
    if not card.exists():
        write_card(folder, DIM)
    library = folder / "lib"
    if (folder / "built").exists():
        return library, card
    rng = np.random.default_rng(size)
    shard = folder / "items.parquet"
    started = time.perf_counter()
    with ShardWriter(shard, model_id=f"bench-{DIM}", dim=DIM, preprocess_version=PREPROCESS_VERSION) as w:
        for modality, share in SPLIT.items():
            count = round(size * share)
            for first in range(0, count, CHUNK):
                n = min(CHUNK, count - first)
                rows = [ShardRow(f"/bench/{modality}/{i:07d}.{EXTENSIONS[modality]}", modality)
                        for i in range(first, first + n)]  # fmt: skip
                w.write(rows, SPACE.items(rng, modality, SPACE.contents(rng, n)))
    print(f"# shard of {size:,} rows written in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    with Library.open(library, model=str(card), device="cpu", create=True) as lib:
        lib.import_vectors([str(shard)])
    print(f"# imported in {time.perf_counter() - started:.0f} s", flush=True)
    shard.unlink()
    (folder / "built").write_text("ok\n")
    return library, card


def todays(searcher: Searcher, terms: list[Term], opts: SearchOptions) -> object:
    """The search as it was before the ranking stages (see the module's docstring)."""
    keys = searcher.retrieval.keys(opts)
    query = searcher.embed(terms)
    found = searcher.retrieval.search(
        query, keys, opts, searcher.retrieval.excluded(terms, opts), searcher.tuning
    )
    return assemble_hits(searcher.library.store, found, opts.k, per_file=opts.segments)


def bench(library: Path, card: Path, queries: np.ndarray) -> None:
    with Library.open(library, model=str(card), device="cpu") as lib:
        counts = lib.store.vectors.counts()
        kinds = {key: lib.index(key).spec for key in counts}
        print(
            f"\n### {sum(counts.values()):,} items: "
            + ", ".join(f"{k} {counts[k]:,} ({kinds[k]})" for k in counts)
        )
        base = SearchOptions(k=10)
        searcher = Searcher(lib)
        first = [Term(VECTOR, queries[0])]
        todays(searcher, first, base)  # indexes loaded and paged in before anything is timed
        started = time.perf_counter()
        searcher.search(first, replace(base, keywords=False, fold=False))
        print(f"first query (draws the calibration samples): {(time.perf_counter() - started) * 1000:.1f} ms")
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        names = list(VARIANTS)
        for turn, q in enumerate(queries[1:]):
            terms = [Term(VECTOR, q)]
            # Untimed first: the query's lists of an approximate index paged into this process (the
            # first variant to touch them paid that, and with one fixed order it was always today's).
            searcher.search(terms, base)
            for name in names[turn % len(names) :] + names[: turn % len(names)]:  # each in turn first
                fields = VARIANTS[name]
                started = time.perf_counter()
                if fields is None:
                    todays(searcher, terms, base)
                else:
                    searcher.search(terms, replace(base, **fields))
                times[name].append(time.perf_counter() - started)
    today = statistics.median(times["today's"])
    print("\n| variant | p50 | p95 | p50 added over today's | ratio |\n|---|---:|---:|---:|---:|")
    for name, values in times.items():
        p50, p95 = statistics.median(values), float(np.percentile(values, 95))
        print(f"| {name} | {p50 * 1000:.2f} ms | {p95 * 1000:.2f} ms | {(p50 - today) * 1000:+.2f} ms "
              f"| {p50 / today:.3f} |", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="items per library")
    ap.add_argument("--queries", type=int, default=200, help="queries timed per variant")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ibsearch-bench-ranking"), help="kept, reused")
    args = ap.parse_args()
    print(f"# bench_ranking: {cpu_model()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    rng = np.random.default_rng(99)
    queries = SPACE.items(rng, "text", SPACE.contents(rng, args.queries + 1))
    for size in args.sizes:
        library, card = build(args.workdir / f"items-{size}", size)
        bench(library, card, queries)
    print(f"\n# load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
