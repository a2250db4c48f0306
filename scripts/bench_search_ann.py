"""The approximate index ``auto`` builds, per distribution, against the kind it built before (issue 22):
``python scripts/bench_search.py --kinds --index-only --data mixture,tight,bursts,modalities``.

For each distribution, in one process and on the same vectors:

1. ``--n`` vectors drawn once into ``<workdir>/<data>_<n>x<dim>.f32`` (memory-mapped, reused by a later
   run), 1,000 held-out queries of the same distribution and their exact top 10 (streamed, chunk by chunk).
2. **ours**: ``builder.build_approximate`` as ``auto`` runs it (sampled, k-means, filled, ``nprobe`` and
   candidates tuned on library vectors); its build time, file size (saved, then deleted), held-out
   recall@10, single-query p50/p95 (300 queries) and a batch of 100 (best of 3), at the FAISS level.
3. **before**: the kind ``auto`` built before this change (``Refine(SQ8)``, 160 candidates, only ``nprobe``
   tuned) over a copy of the same trained lists (its build time is its twin's fill and its tuning
   only), measured the same way, and whether ``auto`` would have kept it (``max_scan``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from bench_search_kinds import CHUNK, Distribution, K, best_of, load, percentiles, recall, say

import ibsearch.index.tuner as tuner
from ibsearch.index import FaissIndex, IndexPolicy, refine_path
from ibsearch.index.builder import RECALL_MARGIN, build_approximate, training_sample
from ibsearch.index.policy import approximate_spec
from ibsearch.index.refine import RefineCodes, split_spec

BEFORE_CODES = "SQ8"


def vectors_file(work: Path, dist: Distribution, n: int) -> np.ndarray:
    """The ``(n, dim)`` vectors of ``dist``, drawn into a file once and memory-mapped."""
    path = work / f"{dist.kind}_{n}x{dist.dim}.f32"
    if not path.exists():
        started = time.perf_counter()
        out = np.memmap(f"{path}.part", np.float32, "w+", shape=(n, dist.dim))
        for ids, vectors in dist.chunks(n):
            out[ids[0] : ids[-1] + 1] = vectors
        out.flush()
        del out
        os.replace(f"{path}.part", path)
        say(f"{dist.kind}: {n:,} vectors drawn in {time.perf_counter() - started:.0f} s")
    return np.memmap(path, np.float32, "r", shape=(n, dist.dim))


def chunks_of(xb: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(xb), CHUNK):
        stop = min(start + CHUNK, len(xb))
        yield np.arange(start, stop, dtype=np.int64), np.ascontiguousarray(xb[start:stop])


def exact_top(xb: np.ndarray, queries: np.ndarray) -> np.ndarray:
    truth = tuner.TruthCollector(queries, np.full(len(queries), -1), K)
    for ids, vectors in chunks_of(xb):
        truth.add(ids, vectors)
    return truth.truth()


def measure(index: FaissIndex, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Held-out recall@10, single-query p50/p95 and a batch of 100 of ``index``."""
    index.search(queries[:10], K)  # warm
    one = percentiles(lambda i: index.search(queries[i], K), 300)
    return {
        "held-out recall@10": round(recall(index.search(queries, K)[1], truth), 4),
        "single p50 / p95 ms": f"{one[0]:.2f} / {one[1]:.2f}",
        "batch 100 ms": round(best_of(lambda: index.search(queries[:100], K)), 1),
    }


def file_gb(index: FaissIndex, work: Path) -> float:
    path = work / "bench-ann.faiss"
    index.save(path)
    files = [path, Path(refine_path(path)), Path(f"{path}.json")]
    size = sum(f.stat().st_size for f in files[:2] if f.exists())
    for f in files:
        f.unlink(missing_ok=True)
    return round(size / 1e9, 2)


def before_kind(
    ours: FaissIndex, sample: tuple[np.ndarray, np.ndarray], xb: np.ndarray, policy: IndexPolicy
) -> tuple[FaissIndex, float]:
    """The kind ``auto`` built before: ``ours``'s trained lists copied, an SQ8 twin filled, ``nprobe``
    alone tuned at 160 candidates (as the tuner did); with the seconds the twin and tuning took."""
    started = time.perf_counter()
    base, _ = split_spec(ours.spec)
    old = FaissIndex(ours.dim, f"{base},Refine({BEFORE_CODES})")
    old._index = faiss.deserialize_index(faiss.serialize_index(ours.raw))
    old._refine = RefineCodes.mirror(old._ivf(), BEFORE_CODES)
    old._refine.train(sample[1])
    graph = old._graph_quantizer()
    centroids = None if graph is None else old._centroids(graph)
    pick = np.random.default_rng(0).permutation(len(sample[0]))[: policy.tune_queries]
    truth = tuner.TruthCollector(sample[1][pick], sample[0][pick], policy.k)
    for ids, vectors in chunks_of(xb):
        old._refine.add(ids, vectors, centroids)
        truth.add(ids, vectors)
    steps, tuner.CANDIDATES_PER_HIT_STEPS = tuner.CANDIDATES_PER_HIT_STEPS, (16,)
    try:
        top = max(1, int(policy.max_scan * old.nlist))
        aim = min(policy.recall + RECALL_MARGIN, 0.999)
        tuning = tuner.tune(old, truth.queries, truth.query_ids, truth.truth(), aim, top)
    finally:
        tuner.CANDIDATES_PER_HIT_STEPS = steps
    old.record = ours.record.__class__(tuning=tuning)
    return old, time.perf_counter() - started


def row(name: str, index: FaissIndex, policy: IndexPolicy, seconds: float, gb: float) -> dict[str, Any]:
    tuning = index.record.tuning
    assert tuning is not None
    kept = "approximate" if tuning.recall >= policy.recall else "exact (declined)"
    return {
        "kind": f"{name}: {index.spec}",
        "auto keeps": kept,
        "tuned: nprobe, candidates, recall": f"{tuning.nprobe}, {tuning.candidates or 160}, {tuning.recall}",
        "build s": round(seconds, 1),
        "index GB": gb,
    }


def bench_one(data: str, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    say(f"\n## {data} (load average {load()})")
    dist = Distribution(data, args.dim, args.n)
    xb = vectors_file(work, dist, args.n)
    queries = dist.draw(np.random.default_rng(999), 1000)
    started = time.perf_counter()
    truth = exact_top(xb, queries)
    say(f"exact top {K} of 1,000 held-out queries in {time.perf_counter() - started:.0f} s")
    spec = approximate_spec(args.n, args.dim)
    policy = IndexPolicy()
    sample = training_sample(spec, args.dim, np.arange(args.n), lambda ids: (ids, np.asarray(xb[ids])))
    started = time.perf_counter()
    ours = build_approximate(args.dim, spec, sample, chunks_of(xb), policy, model_id=None, reason="")
    rows = [{**row("ours", ours, policy, time.perf_counter() - started, file_gb(ours, work)),
             **measure(ours, queries, truth)}]  # fmt: skip
    say(str(rows[-1]))
    if ours.ntotal == args.n:  # (not declined on its sample)
        old, seconds = before_kind(ours, sample, xb, policy)
        rows.append(
            {**row("before", old, policy, seconds, file_gb(old, work)), **measure(old, queries, truth)}
        )
        say(str(rows[-1]))
        del old
    del ours
    return rows


def index_only(args: argparse.Namespace) -> None:
    """The table of the module docstring, one distribution after another (``--data a,b,c``)."""
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for data in args.data.split(","):
        rows += [{"data": data, **r} for r in bench_one(data, args, work)]
    say(f"\n## Summary: {args.n:,} x {args.dim}, k = {K}, FAISS level, index in memory")
    keys = list(rows[0])
    say("| " + " | ".join(keys) + " |")
    say("|" + "---|" * len(keys))
    for r in rows:
        say("| " + " | ".join(str(r.get(k, "")) for k in keys) + " |")
    say(f"\n# load average at the end: {load()}")
