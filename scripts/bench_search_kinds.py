"""The index kinds of issue #12, side by side on one library: ``python scripts/bench_search.py --kinds``.

Steps (each timed; the shard and the library are kept in ``--workdir`` and reused by a later run):

1. ``--n`` unit vectors of ``--dim`` from a distribution (``--data``), written as a Parquet shard with
   ``ShardWriter``; 1,000 held-out query vectors from the same distribution.
   * ``mixture`` (embedding-like): a 64-dimensional latent space of 200 overlapping Gaussian clusters,
     embedded in 1024 dimensions by a random orthonormal map, plus isotropic noise (a vector keeps about
     75 % of its norm in the latent directions). Neighbourhoods are continuous, not separate blobs.
   * ``clustered``: the older bench's 1,000 Gaussian centres with noise of the same norm (easy for IVF:
     each vector's neighbours sit in its own blob).
   * ``tight``: 2,000 random unit centres, noise a third of the centre's norm (hundreds of near-equal
     members per cluster at 1M, whose top 10 the 4-bit codes cannot tell apart).
   * ``bursts``: near-duplicate bursts as photo libraries have: 30 % of the vectors in groups of 5-50
     (a mixture vector plus noise of norm 0.12: within cosine 0.98 of each other), the rest mixture.
   * ``modalities``: the mixture in four cones apart (as ImageBind's modalities are), 55/25/15/5 %.
   * ``uniform``: uniformly random directions, the worst case for IVF (no structure to partition).
2. ``ibsearch import`` of the shard into a new library (the index kind forced exact while importing).
3. Exact: ``reindex --index exact``; then ``reindex --index auto`` for the approximate index.
   For each: build time, index file size, then searches through the library's own ``LiveIndex`` (the
   file memory-mapped as a query process maps it) and through ``Searcher`` (SQLite to hits):
   single-query p50/p95, a batch of 100, a 0.1 % filter and a 50 % filter, and recall@10 against the
   exact top 10 of the held-out queries; then the wall time and RSS of a cold query process.

``--index-only`` skips the library: the approximate index ``auto`` builds and the kind it built before,
in memory, side by side on each distribution of ``--data a,b,c`` (``bench_search_ann``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ibsearch.engine import Library
from ibsearch.index import IndexPolicy, refine_path
from ibsearch.ingest.commit import PREPROCESS_VERSION
from ibsearch.search import Searcher
from ibsearch.shards import ShardRow, ShardWriter

K = 10
CHUNK = 50_000
MODEL = "bench-random"
#: bursts: the share of vectors in near-duplicate groups, and their noise (norm, against a unit base):
#: two members of a group lie within cosine 1 / (1 + 0.12 ** 2) = 0.986 of each other.
BURST_SHARE = 0.3
BURST_NOISE = 0.12
#: modalities: four cones (as ImageBind's modalities sit apart: the "modality gap"), each the mixture
#: moved along its own direction by its gap, in these shares (vision, text, audio, sensors).
MODALITY_SHARES = np.array([0.55, 0.25, 0.15, 0.05])
MODALITY_GAP = np.array([0.8, 1.2, 1.0, 1.5])


# ------------------------------------------------------------------------------------------- data


class Distribution:
    """Draws unit vectors of one of the ``--data`` distributions (same parameters for every draw).

    ``n``: the library size the near-duplicate bursts are laid out for (their groups are fixed)."""

    KINDS = ("mixture", "clustered", "tight", "bursts", "modalities", "uniform")

    def __init__(self, kind: str, dim: int, n: int = 1_000_000) -> None:
        self.kind, self.dim = kind, dim
        rng = np.random.default_rng(2026)
        # Every kind but uniform builds on the mixture (bursts and modalities are variations of it).
        self.basis = np.linalg.qr(rng.standard_normal((dim, 64)))[0].astype(np.float32).T  # (64, dim)
        self.centres = rng.standard_normal((200, 64)).astype(np.float32)
        if kind in ("clustered", "tight"):
            count = 1000 if kind == "clustered" else 2000
            centres = rng.standard_normal((count, dim)).astype(np.float32)
            self.blobs = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        elif kind == "bursts":
            sizes = rng.integers(5, 51, size=int(BURST_SHARE * n / 27.5))  # groups of 5-50
            self.bases = self.mixture(rng, len(sizes))
            self.weights = sizes / sizes.sum()
        elif kind == "modalities":
            offsets = rng.standard_normal((len(MODALITY_SHARES), dim)).astype(np.float32)
            self.offsets = offsets / np.linalg.norm(offsets, axis=1, keepdims=True)

    def mixture(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` vectors of the mixture (not yet normalized)."""
        z = self.centres[rng.integers(200, size=n)] * 0.7 + rng.standard_normal((n, 64), dtype=np.float32)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        noise = rng.standard_normal((n, self.dim), dtype=np.float32) * np.float32(0.6 / np.sqrt(self.dim))
        return z @ self.basis + noise

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        d = self.dim
        if self.kind in ("clustered", "tight"):
            spread = 1.0 if self.kind == "clustered" else 1 / 3  # noise of the centre's norm, or a third
            noise = rng.standard_normal((n, d), dtype=np.float32) * np.float32(spread / np.sqrt(d))
            x = self.blobs[rng.integers(len(self.blobs), size=n)] + noise
        elif self.kind == "bursts":
            x = self.mixture(rng, n)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            burst = rng.random(n) < BURST_SHARE
            group = rng.choice(len(self.bases), size=int(burst.sum()), p=self.weights)
            base = self.bases[group] / np.linalg.norm(self.bases[group], axis=1, keepdims=True)
            noise = rng.standard_normal(base.shape, dtype=np.float32) * np.float32(BURST_NOISE / np.sqrt(d))
            x[burst] = base + noise
        elif self.kind == "modalities":
            x = self.mixture(rng, n)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            which = rng.choice(len(MODALITY_SHARES), size=n, p=MODALITY_SHARES)
            x += self.offsets[which] * np.float32(MODALITY_GAP)[which, None]
        elif self.kind == "mixture":
            x = self.mixture(rng, n)
        else:
            x = rng.standard_normal((n, d), dtype=np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def chunks(self, n: int, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(seed)
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            yield np.arange(start, start + m, dtype=np.int64), self.draw(rng, m)


def path_of(i: int) -> str:
    """1,000 files per folder: one folder is 0.1 % of a 1M library, folders 0000-0499 are 50 %."""
    return f"/bench/{i // 1000:04d}/{i:07d}.jpg"


# ------------------------------------------------------------------------------------------- helpers


def percentiles(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """p50 and p95 in ms of ``fn(i)`` for i in range(n)."""
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append(1000 * (time.perf_counter() - start))
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return min(times)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Recall@k of ``found`` against ``truth`` (both ``(nq, k)``, -1 padded)."""
    pairs = zip(found, truth, strict=True)
    return float(np.mean([len(set(f[f >= 0]) & set(t[t >= 0])) / max((t >= 0).sum(), 1) for f, t in pairs]))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def say(text: str) -> None:
    print(text, flush=True)


# ------------------------------------------------------------------------------------------- the run


def bench_kinds(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"
    )
    say(f"# bench_search --kinds: {args.n:,} x {args.dim} '{args.data}' unit vectors, k={K}")
    say(f"# {cpu}, {os.cpu_count()} CPUs, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads), "
        f"numpy {np.__version__}, {platform.python_version()}, load average {load()}")  # fmt: skip
    if args.index_only:
        from bench_search_ann import index_only

        index_only(args)
        return
    dist = Distribution(args.data, args.dim, args.n)
    queries = dist.draw(np.random.default_rng(999), 1000)
    lib_dir, card = build_library(work, dist, args)
    truth: dict[str, np.ndarray] = {}
    rows = []
    for kind in ("exact", "auto"):
        rows.append(measure_kind(lib_dir, card, kind, queries, truth, args))
    say("\n## Summary (times in ms unless noted)")
    keys = list(rows[0])
    say("| " + " | ".join(keys) + " |")
    say("|" + "---|" * len(keys))
    for row in rows:
        say("| " + " | ".join(str(row[k]) for k in keys) + " |")
    say(f"\n# load average at the end: {load()}")


def build_library(work: Path, dist: Distribution, args: argparse.Namespace) -> tuple[Path, Path]:
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.cards import ModelCard, save_card

    card = save_card(
        ModelCard(MODEL, get_config("imagebind_tiny"), str(work / "none.pth")), work / "card.json"
    )
    shard = work / f"{args.data}_{args.n}.parquet"
    lib_dir = work / f"lib_{args.data}_{args.n}"
    if not shard.exists():
        started = time.perf_counter()
        with ShardWriter(
            shard, model_id=MODEL, dim=args.dim, preprocess_version=PREPROCESS_VERSION
        ) as writer:
            for ids, vectors in dist.chunks(args.n):
                rows = [
                    ShardRow(path_of(int(i)), "vision", size=1, mtime_ns=1, hash=f"{i:064x}") for i in ids
                ]
                writer.write(rows, vectors)
        say(f"shard written: {shard.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - started:.0f} s")
    if not (lib_dir / "ibsearch.db").exists():
        started = time.perf_counter()
        with Library.open(lib_dir, model=str(card), device="cpu", create=True) as lib:
            with lib.writing():
                lib.bind_model()
                lib.indexes.set_policy(IndexPolicy(kind="exact"))
            summary = lib.import_vectors([str(shard)])
        seconds = time.perf_counter() - started
        db_gb = (lib_dir / "ibsearch.db").stat().st_size / 1e9
        say(f"import: {summary.vectors:,} vectors of {summary.added:,} files in {seconds:.0f} s "
            f"({summary.added / seconds:,.0f} files/s); database {db_gb:.2f} GB")  # fmt: skip
    return lib_dir, card


def measure_kind(
    lib_dir: Path,
    card: Path,
    kind: str,
    queries: np.ndarray,
    truth: dict[str, np.ndarray],
    args: argparse.Namespace,
) -> dict[str, Any]:
    say(f"\n## {kind}")
    with Library.open(lib_dir, model=str(card), device="cpu") as lib:
        started = time.perf_counter()
        lib.reindex(index=kind, exact_below=args.exact_below)
        build_s = time.perf_counter() - started
        facts = lib.info(0)["indexes"]["vision"]
        path = lib.indexes.path("vision")
        refine = Path(refine_path(path))  # the second codes of a refined kind
        size = path.stat().st_size + (refine.stat().st_size if refine.exists() else 0)
        say(f"built in {build_s:.1f} s: {facts['text']}; file {size / 1e9:.2f} GB; {facts['reason']}")
    with Library.open(lib_dir, model=str(card), device="cpu") as lib:  # as a query process opens it
        index = lib.index("vision")
        say(f"loaded: {'memory-mapped' if index.read_only else 'read into memory'}, nprobe {index.nprobe}")
        searcher = Searcher(lib)
        index.search(queries[:1], K)
        mapped = percentiles(lambda i: index.search(queries[i], K), 300)
        via = percentiles(lambda i: searcher.query(vector=queries[i], k=K), 100)
        batch_mapped = best_of(lambda: index.search(queries[:100], K))
        _, found = index.search(queries, K)
        store = lib.store
        tenth = store.vectors.select_ids("vision", under="/bench/0003")
        half = store.vectors.select_ids("vision", glob="/bench/0[0-4]*")
        if kind == "exact":
            truth["all"] = found
            truth["tenth"] = index.search(queries[:100], K, tenth)[1]
            truth["half"] = index.search(queries[:100], K, half)[1]
        f_tenth = percentiles(lambda i: searcher.query(vector=queries[i], k=K, path_prefix="/bench/0003"), 50)
        f_half = percentiles(lambda i: searcher.query(vector=queries[i], k=K, path_glob="/bench/0[0-4]*"), 20)
        i_tenth = percentiles(lambda i: index.search(queries[i], K, tenth), 50)
        i_half = percentiles(lambda i: index.search(queries[i], K, half), 50)
        r_tenth = recall(index.search(queries[:100], K, tenth)[1], truth["tenth"])
        r_half = recall(index.search(queries[:100], K, half)[1], truth["half"])
        b_half = best_of(lambda: index.search(queries[:100], K, half))
    with Library.open(lib_dir, model=str(card), device="cpu") as lib:  # as a long-lived server would
        lib.indexes.mmap_from = 1 << 62
        started = time.perf_counter()
        index = lib.index("vision")
        read_s = time.perf_counter() - started
        index.search(queries[:1], K)
        one = percentiles(lambda i: index.search(queries[i], K), 300)
        batch = best_of(lambda: index.search(queries[:100], K))
    cold = cold_query(lib_dir, card, queries[500])
    row = {
        "kind": kind if kind == "exact" else facts["spec"],
        "build s": round(build_s, 1),
        "index GB": round(size / 1e9, 2),
        "recall@10 held-out": round(recall(found, truth["all"]), 4),
        "tuned recall (nprobe)": f"{facts['recall']} ({facts.get('nprobe', '-')})",
        "single p50/p95, in memory": f"{one[0]:.2f} / {one[1]:.2f}",
        "batch 100, in memory": round(batch, 1),
        "single p50/p95, mapped (fresh process)": f"{mapped[0]:.2f} / {mapped[1]:.2f}",
        "batch 100, mapped": round(batch_mapped, 1),
        "single p50/p95, Searcher (SQLite to hits)": f"{via[0]:.2f} / {via[1]:.2f}",
        "0.1 % filter p50: index, Searcher (recall)": f"{i_tenth[0]:.2f}, {f_tenth[0]:.2f} ({r_tenth:.3f})",
        "50 % filter p50: index, Searcher (recall)": f"{i_half[0]:.2f}, {f_half[0]:.2f} ({r_half:.3f})",
        "50 % filter batch 100": round(b_half, 1),
        "read into memory s": round(read_s, 2),
        "cold query: wall s, peak RSS GB": cold,
    }
    say(json.dumps(row))
    return row


_COLD = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from ibsearch.engine import Library
from ibsearch.search import Searcher
with Library.open(sys.argv[1], model=sys.argv[2], device="cpu") as lib:
    hits = Searcher(lib).query(vector=np.array(json.loads(sys.argv[3]), dtype=np.float32), k=10)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kb = lambda key: int(status[key].split()[0]) / 1e6
print(json.dumps([time.perf_counter() - started, kb("VmHWM"), kb("RssFile"), kb("RssAnon"), len(hits)]))
"""


def cold_query(lib_dir: Path, card: Path, query: np.ndarray) -> str:
    """Wall time and RSS of a fresh process that opens the library and answers one vector query."""
    out = subprocess.run([sys.executable, "-c", _COLD, str(lib_dir), str(card), json.dumps(query.tolist())],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    wall, peak, file_backed, anon, hits = json.loads(out.strip().splitlines()[-1])
    return f"{wall:.2f} s, {peak:.2f} GB ({file_backed:.2f} file, {anon:.2f} anon), {hits} hits"
