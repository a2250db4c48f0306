"""What the keyword stage costs per query at N file names, and how its fusion ranks.

Cost: a scratch library database of N files (camera names, dated and described names, nested folders:
``name`` and ``folder`` words only, as a library of pictures has), written through the store as an
ingest writes it; then the SQL the keyword stage runs per query (each word's holders counted up to
``RANKED_AT_MOST``, the FTS5 MATCH of the rarer ones with its LIMIT), side by side with the same MATCH
without the cap (bm25 over every holder). Today's search runs no keyword stage: its cost is all added.

Ranking: a small labelled set (``--labelled``): topics whose files have vectors near a topic centre
(noisy, as meaning is), with descriptive names (a topic word in some of its files' names, and words
of other topics by chance); queries with a topic word; the files of that topic are relevant. The meaning
ranking alone, the keyword ranking alone, reciprocal rank fusion (what ``KeywordSearch`` does) and
calibrated fusion (the hit's relevance, its score's percentile among the query's scores against the
library, plus bm25 over the query's best: ``fuse_rankings`` given relevances) are compared by nDCG@10 and MRR.

    python scripts/bench_keywords.py --files 1000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ibsearch.hits import Hit
from ibsearch.keywords import RANKED_AT_MOST, KeywordQuery, fuse_rankings, read_text
from ibsearch.relevance import RelevanceScale
from ibsearch.store import Store
from ibsearch.store.records import PassageSpan

WORDS = (
    "beach sunset harbour lagoon kingfisher heron garden birthday wedding mountain snow river forest city"
    " night party concert museum market train airport bridge castle lake desert island harbor storm rain"
    " spring autumn summer winter dinner picnic school office kitchen dog cat horse"
).split()
QUERIES = (
    "heron",
    "sunset beach",
    '"birthday party"',
    "kingfisher 123456",
    "img",
    "photo of the lake -winter",
    "jpg",
)


def name_of(rng: np.random.Generator, i: int) -> str:
    """A file name as cameras, phones and people write them."""
    kind = i % 4
    if kind == 0:
        return f"IMG_{20150101 + int(rng.integers(0, 90000)):08d}_{i:06d}.jpg"
    if kind == 1:
        return f"DSC{i:07d}.JPG"
    if kind == 2:
        return f"Screenshot {2018 + i % 6}-0{1 + i % 9}-1{i % 10} at 10.{i % 60:02d}.png"
    picked = rng.choice(len(WORDS), size=2, replace=False)
    return f"{WORDS[picked[0]]} {WORDS[picked[1]]} {i}.jpg"


def folder_of(rng: np.random.Generator, i: int) -> str:
    event = WORDS[int(rng.integers(len(WORDS)))]
    return f"/home/user/Pictures/{2010 + i % 15}/{event} {i % 97}"


def build(store: Store, n: int) -> None:
    rng = np.random.default_rng(0)
    batch = 20_000
    for start in range(0, n, batch):
        with store.transaction():
            for i in range(start, min(n, start + batch)):
                store.words.put(i + 1, f"{folder_of(rng, i)}/{name_of(rng, i)}", [])


def stage(store: Store, text: str, limit: int, most: int | None) -> list[tuple[int, float]]:
    """The SQL the keyword stage runs for ``text`` (``KeywordSearch.fuse``): each word's holders counted
    up to ``most`` (None: not counted, every word ranks, as before the cap), then the MATCH with its
    LIMIT; an exclusion is checked among a page of candidates."""
    asked, _ = read_text(text)
    if asked.excluded:
        store.words.among(asked.exclusion() or "", range(1, 1_000_000, 25_000))
    if most is not None:
        asked = asked.keeping(lambda words: store.words.holders(words, most + 1) <= most)
    expression = asked.expression()
    return [] if expression is None else store.words.match(expression, limit)


def cost(n: int, repeats: int, limit: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_keywords_") as tmp:
        path = Path(tmp) / "words.db"
        with Store(path) as store:
            started = time.perf_counter()
            build(store, n)
            built = time.perf_counter() - started
            conn = store._conn  # noqa: SLF001 - a benchmark's scratch database, no part of a library
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = os.path.getsize(path)
            print(f"{n:,} file names written in {built:.1f} s; words table {size / 1e6:.0f} MB of database")
            head = ("query", "holders", "ranked", "stage p50 ms", "no cap p50 ms", "ratio")
            print("{:28} {:>9} {:>7} {:>13} {:>14} {:>6}".format(*head))
            for text in QUERIES:
                asked, _ = read_text(text)
                holders = conn.execute(
                    "SELECT count(*) FROM words WHERE words MATCH ?", (asked.finding() or "",)
                ).fetchone()[0]
                ranked = len(stage(store, text, limit, RANKED_AT_MOST))
                capped = timed(lambda t=text: stage(store, t, limit, RANKED_AT_MOST), repeats)
                uncapped = timed(lambda t=text: stage(store, t, limit, None), repeats)
                ratio = uncapped / capped
                print(f"{text:28} {holders:>9,} {ranked:>7} {capped:>13.2f} {uncapped:>14.2f} {ratio:>5.0f}x")


def text_size(documents: int, chars: int) -> None:
    """What the words table costs beside a document's text: ``documents`` texts of ``chars`` characters
    (words drawn with Zipf's law from a vocabulary of 20,000, as prose is) written as one passage each."""
    rng = np.random.default_rng(3)
    vocabulary = np.array([f"w{i}{WORDS[i % len(WORDS)]}" for i in range(20_000)])
    with tempfile.TemporaryDirectory(prefix="bench_words_text_") as tmp:
        path = Path(tmp) / "words.db"
        total = 0
        with Store(path) as store, store.transaction():
            for i in range(documents):
                ranks = np.minimum(rng.zipf(1.1, size=chars // 6), len(vocabulary)) - 1
                text = " ".join(vocabulary[ranks].tolist())[:chars]
                total += len(text.encode())
                store.words.put(i + 1, f"/notes/note {i}.txt", [PassageSpan(0, len(text), text)])
        with Store(path) as store:
            store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # noqa: SLF001 - the scratch file's size
        size = os.path.getsize(path)
        print(
            f"{documents:,} texts of {chars:,} characters: {total / 1e6:.1f} MB of text, words table"
            f" {size / 1e6:.1f} MB ({size / total:.2f}x the text)"
        )


def timed(run: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# ------------------------------------------------------------------ ranking on a labelled set


def labelled(files_per_topic: int, noise: float, seed: int) -> tuple[np.ndarray, list[int], list[str], int]:
    """``(vectors, topic of each file, names, dim)``: a topic's files lie near its centre."""
    rng = np.random.default_rng(seed)
    dim = 64
    centres = rng.standard_normal((len(WORDS), dim))
    topics = [t for t in range(len(WORDS)) for _ in range(files_per_topic)]
    vectors = centres[topics] + noise * rng.standard_normal((len(topics), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    file_names = []
    for i, topic in enumerate(topics):
        words = [WORDS[int(rng.integers(len(WORDS)))]] if rng.random() < 0.3 else []  # names mislead too
        if rng.random() < 0.4:
            words.append(WORDS[topic])  # some of a topic's files say so in their names
        file_names.append(f"{' '.join(words)} {i}.jpg" if rng.random() < 0.6 else f"IMG_{i:05d}.jpg")
    return vectors, topics, file_names, dim


def ndcg_mrr(order: list[int], relevant: set[int], k: int = 10) -> tuple[float, float]:
    gains = [1.0 / np.log2(r + 2) for r, f in enumerate(order[:k]) if f in relevant]
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(k, len(relevant))))
    first = next((r for r, f in enumerate(order) if f in relevant), None)
    return sum(gains) / ideal, 0.0 if first is None else 1.0 / (first + 1)


def ranking(files_per_topic: int, noise: float, depth: int) -> None:
    vectors, topics, file_names, dim = labelled(files_per_topic, noise, seed=1)
    rng = np.random.default_rng(2)
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_fusion_") as tmp, Store(Path(tmp) / "w.db") as store:
        with store.transaction():
            for i, name in enumerate(file_names):
                store.words.put(i + 1, f"/pictures/{name}", [])
        for topic, word in enumerate(WORDS):
            # The query's meaning: near its topic's centre, as noisy as a text embedding of a word is.
            centre = vectors[[i for i, t in enumerate(topics) if t == topic]].mean(axis=0)
            query = centre / np.linalg.norm(centre) + noise * 0.1 * rng.standard_normal(dim)
            scores = vectors @ (query / np.linalg.norm(query))
            meaning = [int(i) + 1 for i in np.argsort(-scores)[:depth]]
            expression = KeywordQuery(words=(word,)).expression() or ""
            ranked = store.words.match(expression, depth)
            relevant = {i + 1 for i, t in enumerate(topics) if t == topic}
            hits = [Hit(str(f), float(scores[f - 1]), "vision", file_id=f) for f in meaning]
            kept = {f for f, _ in ranked}
            alone = [Hit(str(f), float(scores[f - 1]), "vision", file_id=f) for f in kept - set(meaning)]
            alone.sort(key=lambda h: -h.score)
            rrf = [h.file_id or 0 for h in fuse_rankings(hits, alone, ranked)]
            # Relevance: the score's share of the library's scores below it (the query's own distribution).
            ordered = np.sort(scores)
            rel = [
                replace(h, relevance=float(np.searchsorted(ordered, h.score)) / len(scores))
                for h in hits + alone
            ]
            calibrated = [h.file_id or 0 for h in fuse_rankings(rel[: len(hits)], rel[len(hits) :], ranked)]
            # The calibration stage's own scale (ibsearch.relevance), from the query's scores.
            scale = RelevanceScale.of(scores)
            real = [
                replace(h, relevance=float(scale.relevance(np.array([h.score]))[0])) for h in hits + alone
            ]
            staged = [h.file_id or 0 for h in fuse_rankings(real[: len(hits)], real[len(hits) :], ranked)]
            for label, order in (("meaning alone", meaning), ("keywords alone", [f for f, _ in ranked]),
                                 ("RRF (k=60)", rrf), ("calibrated fusion (percentile)", calibrated),
                                 ("calibrated fusion (ibsearch)", staged)):  # fmt: skip
                results.setdefault(label, []).append(ndcg_mrr(order, relevant))
    print(f"\n{len(WORDS)} queries, {len(file_names)} files ({files_per_topic} per topic), noise {noise:g}")
    print(f"{'ranking':32} {'nDCG@10':>8} {'MRR':>6}")
    for label, values in results.items():
        print(f"{label:32} {np.mean([v[0] for v in values]):>8.3f} {np.mean([v[1] for v in values]):>6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--limit", type=int, default=40, help="keyword matches ranked (a page of 20, folding)"
    )
    parser.add_argument("--labelled", action="store_true", help="only the ranking comparison")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    if not args.labelled:
        cost(args.files, args.repeats, args.limit)
        text_size(2_000, 20_000)
    for noise in (1.0, 1.5, 2.0, 3.0):
        ranking(40, noise, 40)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
