#!/usr/bin/env python
"""Exact-search latency of ibsearch's FAISS index on clustered synthetic unit vectors.

Measures, in one run and on the same index:
  * FaissIndex.search with FAISS's BLAS threshold as ibsearch sets it (20) and at FAISS's default
    (128000), for batches of 1, 10, 100 and 1000 queries, with the ratio;
  * the torch-matmul exact path (TorchExactIndex) on the CPU over the same memory;
  * filtered search (half the ids allowed): FAISS's IDSelector path vs the gathered-BLAS path that
    FaissIndex uses from a few queries on, and torch with a mask.

With ``--kinds``, the index kinds of issue #12 side by side on one library (see ``bench_kinds``):
vectors written as a Parquet shard and brought in with ``import``, then the exact index and the
approximate one that ``auto`` builds (trained and tuned to recall@10 >= 0.95), each measured for
build time, file size, single-query p50/p95, a batch of 100, a 0.1 % and a 50 % filter, recall on
held-out queries, and the RSS of a cold ``query`` process.

Usage:  python scripts/bench_search.py                  # 1M x 1024 (needs ~5 GB RAM)
        python scripts/bench_search.py --n 20000 --dim 64  # quick smoke run
        python scripts/bench_search.py --kinds --data mixture --workdir /tmp/bench  # ~30 min, 13 GB disk
        python scripts/bench_search.py --kinds --data uniform --index-only --n 200000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import faiss
import numpy as np

from ibsearch.index import BLAS_THRESHOLD, FaissIndex, SearchTuning, TorchExactIndex

FAISS_DEFAULT_THRESHOLD = 128000


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="database vectors (default 1,000,000)")
    ap.add_argument("--dim", type=int, default=1024, help="dimension (default 1024, ImageBind huge)")
    ap.add_argument("--centers", type=int, default=1000, help="gaussian cluster centers (default 1000)")
    ap.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    ap.add_argument("--batches", default="1,10,100,1000", help="query batch sizes (default 1,10,100,1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of repeats per cell (median reported)")
    ap.add_argument("--threads", type=int, default=0, help="FAISS/torch threads (default: their own choice)")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch-matmul path")
    ap.add_argument("--no-filter", action="store_true", help="skip the filtered-search table")
    ap.add_argument(
        "--selector-max-batch", type=int, default=100,
        help="largest batch timed on FAISS's IDSelector path (its scalar loop is slow)",
    )  # fmt: skip
    ap.add_argument("--kinds", action="store_true", help="exact vs approximate on a library (issue #12)")
    ap.add_argument("--data", default="mixture",
                    help="--kinds: vector distribution(s), comma-separated: mixture, clustered, tight, "
                    "bursts, modalities, uniform (see bench_search_kinds.Distribution)")  # fmt: skip
    ap.add_argument("--workdir", default="/tmp/ibsearch-bench", help="--kinds: shard and library (kept)")
    ap.add_argument(
        "--exact-below", type=int, default=None, help="--kinds: the auto limit (default: ibsearch's)"
    )
    ap.add_argument(
        "--index-only",
        action="store_true",
        help="--kinds: only build and tune the approximate index in memory",
    )
    return ap.parse_args()


def clustered_unit_vectors(
    rng: np.random.Generator, centers: np.ndarray, n: int, chunk: int = 65536
) -> tuple[int, np.ndarray]:
    """Yield chunks of ``n`` unit vectors: a random center plus isotropic noise of equal expected norm."""
    dim = centers.shape[1]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centers[rng.integers(len(centers), size=m)]
        x += rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield start, x


def timed(fn: Callable[[], object], budget: float) -> float:
    """Median wall time of ``fn`` over repeats filling ``budget`` seconds (1 to 5 runs)."""
    times: list[float] = []
    while len(times) < 5 and (not times or sum(times) + times[-1] <= budget):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load() -> str:
    """The 1/5/15-minute load averages: other processes on a small machine skew every timing here."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:9.1f} ms" if seconds < 10 else f"{seconds:9.2f} s "


def main() -> None:
    args = parse_args()
    if args.kinds:
        from bench_search_kinds import bench_kinds

        bench_kinds(args)
        return
    batches = [int(b) for b in args.batches.split(",")]
    rng = np.random.default_rng(args.seed)
    centers = rng.standard_normal((args.centers, args.dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)

    t0 = time.perf_counter()
    index = FaissIndex(args.dim)
    for start, chunk in clustered_unit_vectors(rng, centers, args.n):
        index.add(np.arange(start, start + len(chunk), dtype=np.int64), chunk)
    build_s = time.perf_counter() - t0
    _, queries = next(clustered_unit_vectors(rng, centers, max(batches)))
    ids, xb = index.vectors_view()
    torch_index = None if args.no_torch else TorchExactIndex.from_arrays(ids, xb, "cpu", copy=False)

    import torch

    print(
        f"# bench_search: {args.n:,} x {args.dim} float32 unit vectors, {args.centers} clusters, k={args.k}"
    )
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    print(
        f"# faiss {faiss.__version__} ({faiss.omp_get_max_threads()} OpenMP threads), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load()}"
    )
    print(f"# index built in {build_s:.1f} s; times are medians of repeats within {args.budget:g} s per cell")
    index.search(queries[:1], args.k)  # warm up (page in the vectors, start threads)
    bench_unfiltered(index, torch_index, queries, batches, args)
    if not args.no_filter:
        allowed = ids[rng.random(len(ids)) < 0.5]
        bench_filtered(index, torch_index, queries, batches, allowed, args)
    print(f"\n# load average at the end: {load()}")


def check_agree(name: str, got: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray]) -> None:
    """Warn (do not stop a long run) when two exact paths disagree beyond float rounding of near-ties."""
    if got[1].shape != ref[1].shape or not np.allclose(got[0], ref[0], atol=1e-5):
        print(f"# WARNING: {name} results differ from FAISS's", flush=True)


def bench_unfiltered(
    index: FaissIndex,
    torch_index: TorchExactIndex | None,
    queries: np.ndarray,
    batches: list[int],
    args: argparse.Namespace,
) -> None:
    """ibsearch's exact search (its settings) vs plain FAISS with its defaults, per batch size."""
    print()
    print("## Exact search, no filter")
    print(
        f"| queries | ibsearch FaissIndex.search | FAISS defaults (threshold {FAISS_DEFAULT_THRESHOLD}, "
        f"block 1024) | defaults / ibsearch | FAISS, threshold {BLAS_THRESHOLD} only | torch matmul (CPU) "
        "| per query (ibsearch) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    raw = index.raw  # the FAISS index itself, searched without ibsearch's choices
    for nq in batches:
        q = queries[:nq]
        ours = timed(lambda q=q: index.search(q, args.k), args.budget)
        faiss.cvar.distance_compute_blas_threshold = FAISS_DEFAULT_THRESHOLD
        default = timed(lambda q=q: raw.search(q, args.k), args.budget)
        faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
        threshold_only = timed(lambda q=q: raw.search(q, args.k), args.budget)
        check_agree("ibsearch", index.search(q[:4], args.k), raw.search(q[:4], args.k))
        torch_s = None
        if torch_index is not None:
            torch_s = timed(lambda q=q: torch_index.search(q, args.k), args.budget)
        print(
            f"| {nq} | {fmt(ours)} | {fmt(default)} | {default / ours:5.1f}x | {fmt(threshold_only)} "
            f"| {fmt(torch_s)} | {fmt(ours / nq)} |",
            flush=True,
        )


def bench_filtered(
    index: FaissIndex,
    torch_index: TorchExactIndex | None,
    queries: np.ndarray,
    batches: list[int],
    allowed: np.ndarray,
    args: argparse.Namespace,
) -> None:
    """FAISS's IDSelector path vs what FaissIndex.search does vs torch with a mask."""
    selector_path = SearchTuning(filtered_blas_min_queries=1 << 30)  # force the IDSelector path
    print()
    print(f"## Exact search, filtered: {len(allowed):,} allowed ids (50%), applied inside the search")
    print("| queries | FAISS IDSelector (scalar loop) | ibsearch FaissIndex.search | torch matmul + mask |")
    print("|---:|---:|---:|---:|")
    for nq in batches:
        q = queries[:nq]
        sel_s = None
        if nq <= args.selector_max_batch:
            sel_s = timed(lambda q=q: index.search(q, args.k, allowed, tuning=selector_path), args.budget)
            selector_hits = index.search(q[:4], args.k, allowed, tuning=selector_path)
            check_agree("gathered BLAS", index.search(q[:4], args.k, allowed), selector_hits)
        ours = timed(lambda q=q: index.search(q, args.k, allowed), args.budget)
        torch_s = None
        if torch_index is not None:
            torch_s = timed(lambda q=q: torch_index.search(q, args.k, allowed), args.budget)
        print(f"| {nq} | {fmt(sel_s)} | {fmt(ours)} | {fmt(torch_s)} |", flush=True)


if __name__ == "__main__":
    main()
