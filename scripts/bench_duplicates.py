#!/usr/bin/env python3
"""``ibsearch duplicates`` at scale: the groups of near-identical files of a library of ``--rows``
whole-file vectors, found by each vector's k-NN search in the library's own index (``Library.duplicates``,
in batches), side by side with the obvious alternative, every pair compared (a blocked matrix product
of all the vectors with themselves, in numpy: n^2 x dim), timed on its first ``--pairs-rows`` rows and
scaled to all of them (its cost is linear in the rows compared against the rest).

Usage:  .venv/bin/python scripts/bench_duplicates.py [--rows 100000] [--dim 1024] [--groups 1000]
        [--index auto|exact|FACTORY] [--pairs-rows 5000] [--folder DIR]

The library is made through ``ibsearch import`` (``Library.import_vectors``) of one shard: unit
vectors around 256 centres (embedding-like: unrelated vectors of one centre score about 0.7), among
them ``--groups`` planted groups of three near-duplicates (cosine about 0.99 to their original), each
file with a size. The index is what the library's policy gives that size (``--index`` overrides it):
at 100,000 vectors the approximate IVF index, tuned to its recall target. The script reports the time
of each way, how many planted groups were found whole, and the peak memory of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_import import write_card
from bench_sensor_memory import cpu_model

from ibsearch.engine import Library
from ibsearch.folding import FOLD_THRESHOLD, Closeness


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--groups", type=int, default=1000, help="planted groups of three near-duplicates")
    parser.add_argument("--index", default="auto", help="the library's index kind, as 'reindex --index'")
    parser.add_argument("--pairs-rows", type=int, default=5000, help="rows the all-pairs way is timed on")
    parser.add_argument("--folder", type=Path, default=None)
    return parser.parse_args()


def library_vectors(rows: int, dim: int, groups: int) -> np.ndarray:
    """``rows`` unit vectors around 256 centres; rows ``3g``, ``3g+1``, ``3g+2`` (g < groups) are one
    original and two near-duplicates of it."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((256, dim)).astype(np.float32)
    vectors = centres[rng.integers(256, size=rows)] * 1.5
    vectors += rng.standard_normal((rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for g in range(groups):
        for member in (1, 2):
            near = vectors[3 * g] + 0.1 * rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim) * 1.4
            vectors[3 * g + member] = near / np.linalg.norm(near)
    return vectors


def write_library(folder: Path, card: Path, vectors: np.ndarray, index: str) -> None:
    from ibsearch.ingest.commit import PREPROCESS_VERSION
    from ibsearch.shards import ShardRow, ShardWriter

    shard = folder / "library.parquet"
    model = json.loads(card.read_text())["name"]
    with ShardWriter(shard, model_id=model, dim=vectors.shape[1], preprocess_version=PREPROCESS_VERSION) as w:
        for first in range(0, len(vectors), 50_000):
            part = vectors[first : first + 50_000]
            rows = [ShardRow(f"/bench/photo-{first + n:07d}.jpg", "vision", size=1_000_000 + first + n)
                    for n in range(len(part))]  # fmt: skip
            w.write(rows, part)
    with Library.open(folder / "lib", model=str(card), device="cpu", create=True) as lib:
        if index != "auto":
            lib.reindex(index=index)
        lib.import_vectors([str(shard)])
    shard.unlink()


def all_pairs(vectors: np.ndarray, limit: float, rows: int) -> float:
    """Seconds to compare the first ``rows`` vectors with every vector, a block of 1,024 at a time."""
    start = time.perf_counter()
    pairs = 0
    for first in range(0, rows, 1024):
        block = vectors[first : min(first + 1024, rows)] @ vectors.T
        pairs += int(np.count_nonzero(1.0 - block <= limit))
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        card = write_card(folder, args.dim)
        vectors = library_vectors(args.rows, args.dim, args.groups)
        built = time.perf_counter()
        write_library(folder, card, vectors, args.index)
        built = time.perf_counter() - built
        with Library.open(folder / "lib", model=str(card), device="cpu") as lib:
            spec = lib.index("vision").spec
            limit = Closeness(lib).limit("vision")
            start = time.perf_counter()
            groups = lib.duplicates()
            ours = time.perf_counter() - start
        planted = {
            frozenset(f"/bench/photo-{3 * g + m:07d}.jpg" for m in range(3)) for g in range(args.groups)
        }
        found = {frozenset(f.path for f in g.files) for g in groups}
        naive = (
            all_pairs(vectors, limit, min(args.pairs_rows, args.rows))
            * args.rows
            / min(args.pairs_rows, args.rows)
        )
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} (shared machine)"
    )
    print(
        f"{args.rows:,} vectors x {args.dim}, index {spec}; library built (import + index) in {built:.1f} s"
    )
    print(f"planted groups found whole: {len(planted & found)}/{len(planted)}; groups listed: {len(groups)}")
    print(f"{'way':<44} {'seconds':>9} {'ratio':>7}")
    print(f"{'duplicates: k-NN per vector, batches of 1024':<44} {ours:9.1f} {1.0:7.2f}")
    print(f"{'all pairs (blocked numpy matmul), scaled':<44} {naive:9.1f} {naive / ours:7.2f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:.0f} MiB; threshold {FOLD_THRESHOLD}")


if __name__ == "__main__":
    main()
