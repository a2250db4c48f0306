#!/usr/bin/env python
"""Exact search of one query against numpy's matrix product, at 10k, 100k and 300k x 1024 (issue 22).

For each size, in one process and on the same vectors, interleaved round by round (so that the
machine's load falls on all of them alike), the median of ``--queries`` single queries, k = 10:

* **numpy**: ``X @ q`` and ``argpartition`` over the vectors held in a numpy array (the bar to meet:
  ours at most 1.15x this);
* **ours**: the library's exact index file memory-mapped (as a query process maps it), searched by
  ``FaissIndex.search`` (a product over the index's own memory, ``index.exact``);
* **FAISS flat**: the same mapped index searched by FAISS's own flat search (``exact_product_most=0``:
  how ibsearch searched before);
* **Searcher**: the whole way from a vector term to hits through a library built by ``import`` (SQLite
  rows back to files, and the ranking stages), with ``--searcher`` (the import takes minutes at 300k).

Usage:  python scripts/bench_exact.py [--sizes 10000,100000,300000] [--searcher] [--workdir /tmp/bench-exact]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ibsearch.index import FaissIndex, SearchTuning

DIM = 1024
K = 10


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` unit vectors around 100 directions (exact search costs the same on any distribution)."""
    centres = np.random.default_rng(7).standard_normal((100, DIM)).astype(np.float32)
    x = centres[rng.integers(100, size=n)] + rng.standard_normal((n, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_top(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    scores = x @ q
    top = np.argpartition(-scores, K - 1)[:K]
    return top[np.argsort(-scores[top])]


def library_searcher(work: Path, x: np.ndarray) -> Callable[[np.ndarray], object]:
    """A Searcher over a library holding ``x`` (imported from a shard; kept in ``work`` for next time)."""
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.cards import ModelCard, save_card
    from ibsearch.engine import Library
    from ibsearch.index import IndexPolicy
    from ibsearch.ingest.commit import PREPROCESS_VERSION
    from ibsearch.options import SearchOptions
    from ibsearch.search import Searcher
    from ibsearch.shards import ShardRow, ShardWriter
    from ibsearch.terms import VECTOR, Term

    n = len(x)
    card = save_card(
        ModelCard("bench-exact", get_config("imagebind_tiny"), str(work / "no.pth")), work / "card.json"
    )
    lib_dir = work / f"lib{n}"
    if not (lib_dir / "ibsearch.db").exists():
        shard = work / f"exact{n}.parquet"
        with ShardWriter(
            shard, model_id="bench-exact", dim=DIM, preprocess_version=PREPROCESS_VERSION
        ) as out:
            for at in range(0, n, 50_000):
                part = range(at, min(at + 50_000, n))
                rows = [ShardRow(f"/bench/{i // 1000:03d}/{i:07d}.jpg", "vision", size=1, mtime_ns=1,
                                 hash=f"{i:064x}") for i in part]  # fmt: skip
                out.write(rows, x[part.start : part.stop])
        with Library.open(lib_dir, model=str(card), device="cpu", create=True) as lib:
            with lib.writing():
                lib.bind_model()
                lib.indexes.set_policy(IndexPolicy(kind="exact"))
            lib.import_vectors([str(shard)])
        shard.unlink()
    searcher = Searcher(Library.open(lib_dir, model=str(card), device="cpu"))
    options = SearchOptions(k=K, targets=["vision"])
    return lambda q: searcher.search([Term(VECTOR, q)], options)


def measure(n: int, args: argparse.Namespace) -> dict[str, float]:
    rng = np.random.default_rng(n)
    x = unit_rows(rng, n)
    queries = unit_rows(rng, args.queries)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    index = FaissIndex(DIM)
    index.add(np.arange(n, dtype=np.int64), x)
    index.save(work / f"exact{n}.faiss")
    mapped = FaissIndex.load(work / f"exact{n}.faiss", mmap=True)
    faiss_flat = SearchTuning(exact_product_most=0)
    ways: dict[str, Callable[[np.ndarray], object]] = {
        "numpy": lambda q: numpy_top(x, q),
        "ours": lambda q: mapped.search(q, K),
        "faiss": lambda q: mapped.search(q, K, tuning=faiss_flat),
    }
    if args.searcher:
        ways["searcher"] = library_searcher(work, x)
    for q in queries[:3]:  # page in the mapped file, load what loads on first use
        assert list(mapped.search(q, K)[1][0]) == list(numpy_top(x, q))
        for way in ways.values():
            way(q)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):  # interleaved: each way meets the same load
        for name, way in ways.items():
            # The previous way's threads (numpy's OpenBLAS, torch's and FAISS's OpenMP: three pools)
            # spin for up to ~0.1 s after their last call, taking the cores from this way's: they are let
            # go to sleep first (a query process runs one way, not three taking turns).
            time.sleep(0.3)
            way(queries[0])
            for q in queries:
                started = time.perf_counter()
                way(q)
                times[name].append(1000 * (time.perf_counter() - started))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,300000")
    ap.add_argument("--queries", type=int, default=10, help="queries per round (default 10)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--searcher", action="store_true", help="also through Searcher on an imported library")
    ap.add_argument("--workdir", default="/tmp/bench-exact")
    args = ap.parse_args()
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "?"
    )
    print(f"# {platform.node()}: {model}, {os.cpu_count()} CPUs; load average at start {os.getloadavg()}")
    head = "| vectors | numpy X@q + argpartition | ours (mapped) | ratio | FAISS flat (mapped) | ratio |"
    print(head + (" Searcher | ratio |" if args.searcher else ""))
    print("|---" * (head.count("|") - 1 + (2 if args.searcher else 0)) + "|")
    for n in (int(s) for s in args.sizes.split(",")):
        t = measure(n, args)
        row = f"| {n:,} | {t['numpy']:.2f} ms | {t['ours']:.2f} ms | **{t['ours'] / t['numpy']:.2f}** |"
        row += f" {t['faiss']:.2f} ms | {t['faiss'] / t['numpy']:.2f} |"
        if args.searcher:
            row += f" {t['searcher']:.2f} ms | {t['searcher'] / t['numpy']:.2f} |"
        print(row, flush=True)
    print(f"# load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
