#!/usr/bin/env python
"""How calibrated relevance is estimated, chosen by measurement (issue 21): the methods side by side on
the same vectors, in one run.

The vectors are those of ``tests/test_relevance.py``'s modelled space (each modality's items share an
offset direction, so text-to-text cosines of unrelated items sit near 0.61, text-to-vision near 0.17,
audio-to-vision near 0.11; contents are drawn around 40 topics, so scores have heavier tails than a
normal). For every pair of query kind (the six modalities and a 0.7 text + 0.3 audio mix) and target
modality, queries are scored against a library sample and against ``--held-out`` unrelated items not
in it; each method maps the held-out scores to relevances, and the table says what share of them
reaches each threshold r (the promise: 1 - r), the worst pair and the mean error over pairs.

Methods:
  * ``ibsearch``: :class:`ibsearch.relevance.RelevanceScale`, the query's scores against a sample of
    the target (``--sample``), empirical below the sample's top ``TAIL_SHARE``, fitted tail above;
  * ``normal tail``: the same, with a normal fitted to the whole sample as the tail;
  * ``empirical only``: the sample's own distribution, nothing beyond its largest score;
  * ``per-pair normal``: one normal per (query kind, target) fitted once from sample pairs (what an
    index build could store), the query's own scores unused.
Then the ``ibsearch`` method at other sample sizes, and the cost of one scale (scores + fit) per size.

Usage:  python scripts/bench_relevance.py [--held-out 20000] [--queries 8] [--sample 2048]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_relevance import MODALITIES, SPACE  # noqa: E402 (the modelled space, defined once)

from ibsearch.relevance import RelevanceScale, _log_normal_above  # noqa: E402

THRESHOLDS = (0.8, 0.95, 0.99, 0.999)
Method = Callable[[np.ndarray, np.ndarray, tuple[str, str]], np.ndarray]  # (sample, held-out, pair) -> rel


def ibsearch_method(sample: np.ndarray, held: np.ndarray, pair: tuple[str, str]) -> np.ndarray:
    return RelevanceScale.of(sample).relevance(held)


def tail_from(share: float) -> Method:
    """The ibsearch method with its exponential tail starting at the sample's top ``share``."""
    return lambda sample, held, pair: RelevanceScale.of(sample, tail_share=share).relevance(held)


def normal_tail(sample: np.ndarray, held: np.ndarray, pair: tuple[str, str]) -> np.ndarray:
    scale = RelevanceScale.of(sample)
    n, top = len(sample), max(1, math.ceil(0.05 * len(sample)))
    start = scale.scores[n - top]
    body = np.interp(held, scale.scores, (np.arange(n) + 0.5) / n)
    log_start = _log_normal_above(np.array([start]), scale.mean, scale.spread)[0]
    tail = math.log((top - 0.5) / n) + _log_normal_above(held, scale.mean, scale.spread) - log_start
    return np.where(held > start, -np.expm1(tail), body)


def empirical_only(sample: np.ndarray, held: np.ndarray, pair: tuple[str, str]) -> np.ndarray:
    return np.searchsorted(np.sort(sample), held, side="right") / len(sample)


class PerPair:
    """One normal per (query kind, target), fitted once from pairs of sampled vectors."""

    def __init__(self, library: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        self.fits: dict[tuple[str, str], tuple[float, float]] = {}
        for kind in (*MODALITIES, "text+audio"):
            queries = make_queries(rng, kind, 64)
            for target in MODALITIES:
                scores = queries @ library[target][:2048].T
                self.fits[kind, target] = (float(scores.mean()), float(scores.std()))

    def __call__(self, sample: np.ndarray, held: np.ndarray, pair: tuple[str, str]) -> np.ndarray:
        mean, spread = self.fits[pair]
        return -np.expm1(_log_normal_above(held.astype(np.float64), mean, spread))


def make_queries(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    contents = SPACE.contents(rng, n)
    if kind != "text+audio":
        return SPACE.items(rng, kind, contents)
    mix = 0.7 * SPACE.items(rng, "text", contents) + 0.3 * SPACE.items(rng, "audio", contents)
    return (mix / np.linalg.norm(mix, axis=1, keepdims=True)).astype(np.float32)


def measure(method: Method, library: dict[str, np.ndarray], held: dict[str, np.ndarray], sample: int,
            queries: dict[str, np.ndarray]) -> dict[float, tuple[float, float, float]]:  # fmt: skip
    """Per threshold: (mean share over pairs, worst pair's share, mean |share - promise| / promise)."""
    shares: dict[float, list[float]] = {r: [] for r in THRESHOLDS}
    for kind, qs in queries.items():
        for target in MODALITIES:
            found = {r: 0.0 for r in THRESHOLDS}
            for q in qs:
                rel = method(library[target][:sample] @ q, held[target] @ q, (kind, target))
                for r in THRESHOLDS:
                    found[r] += float((rel >= r).mean()) / len(qs)
            for r in THRESHOLDS:
                shares[r].append(found[r])
    out = {}
    for r, values in shares.items():
        promise = 1 - r
        worst = max(values, key=lambda v: abs(v - promise))
        out[r] = (float(np.mean(values)), worst, float(np.mean([abs(v - promise) / promise for v in values])))
    return out


def row(name: str, result: dict[float, tuple[float, float, float]]) -> str:
    cells = [f"{m * 100:.2f} % (worst {w * 100:.2f} %, error {e * 100:.0f} %)" for m, w, e in result.values()]
    return f"| {name} | " + " | ".join(cells) + " |"


def scale_cost(sample: int, dim: int = 1024, repeats: int = 200) -> float:
    """Median seconds of one query's scale on one index: the scores against the sample and the fit."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((sample, dim)).astype(np.float32)
    q = vectors[0] / np.linalg.norm(vectors[0])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        RelevanceScale.of(vectors @ q).log_share_above(np.linspace(-0.1, 0.3, 40))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--held-out", type=int, default=20000, help="unrelated items per modality not sampled")
    ap.add_argument("--queries", type=int, default=8, help="queries per query kind")
    ap.add_argument("--sample", type=int, default=2048, help="the sample size compared across methods")
    args = ap.parse_args()
    rng = np.random.default_rng(2026)
    library = {m: SPACE.items(rng, m, SPACE.contents(rng, 8192)) for m in MODALITIES}
    held = {m: SPACE.items(rng, m, SPACE.contents(rng, args.held_out)) for m in MODALITIES}
    queries = {kind: make_queries(rng, kind, args.queries) for kind in (*MODALITIES, "text+audio")}
    print(
        f"# bench_relevance: {len(queries)} query kinds x {len(MODALITIES)} targets, {args.queries} queries "
        f"each, {args.held_out:,} held-out items per modality; load average {os.getloadavg()[0]:.2f}"
    )
    head = " | ".join(f"share >= {r} (promise {(1 - r) * 100:g} %)" for r in THRESHOLDS)
    print(f"\n| method (sample {args.sample}) | {head} |\n|---|" + "---|" * len(THRESHOLDS))
    methods: dict[str, Method] = {
        "ibsearch": ibsearch_method,
        "exponential tail from the top 5 %": tail_from(0.05),
        "from the top 2 %": tail_from(0.02),
        "normal tail": normal_tail,
        "empirical only": empirical_only,
        "per-pair normal": PerPair(library, rng),
    }
    for name, method in methods.items():
        print(row(name, measure(method, library, held, args.sample, queries)), flush=True)
    print(f"\n| ibsearch, sample size | {head} | one scale (ms) |\n|---|" + "---|" * (len(THRESHOLDS) + 1))
    for size in (512, 1024, 2048, 4096, 8192):
        result = measure(ibsearch_method, library, held, size, queries)
        print(row(str(size), result) + f" {scale_cost(size) * 1000:.2f} |", flush=True)
    print(f"\n# load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
