#!/usr/bin/env python
"""What dates (issue 21) cost, side by side with the search and ingest without them, in one run.

1. Queries on a library of ``--n`` imported vectors (``--dim``, the embedding-like ``mixture`` of
   ``bench_search_kinds``, an exact index), each file dated at random over ten years: through ``Searcher``,
   p50/p95 of ``sort="date"`` (which reads the best 1,000 of the index and sorts them) against today's
   ``sort="relevance"``, and of ``after``/``before`` filters keeping 50 % and 1 % against no filter, on
   the same held-out query vectors, interleaved query by query.
2. Ingest: ``probe`` of ``--photos`` JPEG photos with EXIF (size and date taken) against the header read
   it did before (size only); and the first ingest of an old library (its files stored without dates:
   each file's metadata read, no model) against the no-op ingest of the same library once dated.

    python scripts/bench_dates.py --workdir /tmp/bench-dates --n 100000
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ibsearch.encoder.media.probe import probe
from ibsearch.engine import Library
from ibsearch.index import IndexPolicy
from ibsearch.ingest.commit import PREPROCESS_VERSION
from ibsearch.modality import FileKind
from ibsearch.search import Searcher
from ibsearch.shards import ShardRow, ShardWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search_kinds import MODEL, Distribution, load, path_of, say  # noqa: E402

YEARS = 10 * 365.25 * 86_400
START = 1_500_000_000.0  # July 2017


def tiny_card(work: Path) -> Path:
    """A model card of the tiny random-weight config with a real checkpoint (the ingest runs it)."""
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.cards import ModelCard, save_card
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    if not (work / "tiny.pth").exists():
        write_random_checkpoint(get_config("imagebind_tiny"), work / "tiny.pth", seed=7)
    card = ModelCard(MODEL, get_config("imagebind_tiny"), str(work / "tiny.pth"))
    return save_card(card, work / "card.json")


def dated_library(work: Path, card: Path, n: int, dim: int) -> tuple[Path, np.ndarray]:
    """A library of ``n`` imported vectors, each file with a date taken (built once, kept in ``work``)."""
    lib_dir = work / f"lib_{n}_{dim}"
    dates = START + np.random.default_rng(5).random(n) * YEARS
    if not (lib_dir / "ibsearch.db").exists():
        shard = work / f"dated_{n}_{dim}.parquet"
        with ShardWriter(shard, model_id=MODEL, dim=dim, preprocess_version=PREPROCESS_VERSION) as writer:
            for ids, vectors in Distribution("mixture", dim).chunks(n):
                rows = [ShardRow(path_of(int(i)), "vision", metadata={"taken": float(dates[i]),
                                 "taken_from": "exif"}) for i in ids]  # fmt: skip
                writer.write(rows, vectors)
        started = time.perf_counter()
        with Library.open(lib_dir, model=str(card), device="cpu", create=True) as lib:
            with lib.writing():
                lib.bind_model()
                lib.indexes.set_policy(IndexPolicy(kind="exact"))
            lib.import_vectors([str(shard)])
        say(f"import of {n:,} dated vectors: {time.perf_counter() - started:.0f} s")
        shard.unlink()
    return lib_dir, dates


def timed(fn, *args, **kwargs) -> float:
    started = time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - started) * 1e3


def bench_queries(lib_dir: Path, card: Path, dates: np.ndarray, args: argparse.Namespace) -> None:
    queries = Distribution("mixture", args.dim).draw(np.random.default_rng(99), args.queries)
    half, one = np.quantile(dates, [0.25, 0.75]), np.quantile(dates, [0.50, 0.51])
    ways = {
        "relevance (today)": {},
        "sort date": {"sort": "date", "min_relevance": 0},
        "after/before 50 %": {"after": half[0], "before": half[1]},
        "after/before 1 %": {"after": one[0], "before": one[1]},
    }
    times: dict[str, list[float]] = {way: [] for way in ways}
    with Library.open(lib_dir, model=str(card), device="cpu") as lib, Searcher(lib) as searcher:
        searcher.query(vector=queries[0], k=10)  # the index loaded
        for q in queries:
            for way, options in ways.items():
                times[way].append(timed(searcher.query, vector=q, k=10, fold=False, **options))
    base = statistics.median(times["relevance (today)"])
    what = f"search of {args.n:,} x {args.dim} (exact), {args.queries} queries"
    say(f"\n| {what} | p50 ms | p95 ms | vs today |")
    say("|---|---|---|---|")
    for way, found in times.items():
        p50, p95 = statistics.median(found), float(np.percentile(found, 95))
        say(f"| {way} | {p50:.1f} | {p95:.1f} | {p50 / base:.2f}x ({p50 - base:+.1f} ms) |")


def write_photos(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    paths = []
    for i in range(count):
        exif = Image.Exif()
        exif[271], exif[272] = "Canon", "Canon EOS R5"
        exif.get_ifd(0x8769)[36867] = f"20{10 + i % 15}:0{1 + i % 9}:1{i % 10} 12:00:00"
        pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels).save(path, exif=exif, quality=85)
        paths.append(path)
    return paths


def header_only(path: Path) -> dict:
    """What ``probe`` read of a photo before dates: its size from the header."""
    from PIL import Image

    with Image.open(path) as img:
        return {"width": img.width, "height": img.height}


def bench_ingest(work: Path, card: Path, count: int) -> None:
    photos = write_photos(work / "photos", count)
    before: list[float] = []
    now: list[float] = []
    for path in photos:
        before.append(timed(header_only, path))
        now.append(timed(probe, str(path), FileKind.IMAGE))
    p_before, p_now = statistics.median(before), statistics.median(now)
    say(f"\n| probe of a 640x480 JPEG with EXIF ({count} files) | p50 ms |\n|---|---|")
    say(f"| size only (before) | {p_before:.3f} |\n| size and date taken (now) | {p_now:.3f} "
        f"({p_now / p_before:.2f}x, {p_now - p_before:+.3f} ms) |")  # fmt: skip
    lib_dir = work / "photo_lib"
    with Library.open(lib_dir, model=str(card), device="cpu", create=True) as lib:
        lib.ingest([str(work / "photos")], workers=0)
    with sqlite3.connect(lib_dir / "ibsearch.db") as db:  # as ingested before dates were read
        db.execute("UPDATE files SET info = json_remove(info, '$.taken', '$.taken_from', '$.camera')")
    db.close()
    runs = {}
    for label in ("old library: dates read", "dated: no-op (today)"):
        with Library.open(lib_dir, model=str(card), device="cpu") as lib:
            started = time.perf_counter()
            summary = lib.ingest([str(work / "photos")], workers=0)
            runs[label] = time.perf_counter() - started
            assert summary.encoded == 0 and summary.unchanged == count, summary
    say(f"\n| re-ingest of {count} photos | s | files/s |\n|---|---|---|")
    for label, seconds in runs.items():
        say(f"| {label} | {seconds:.2f} | {count / seconds:,.0f} |")


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-dates"))
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--photos", type=int, default=300)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    say(f"load average at start: {load()}")
    card = tiny_card(args.workdir)
    lib_dir, dates = dated_library(args.workdir, card, args.n, args.dim)
    bench_queries(lib_dir, card, dates, args)
    bench_ingest(args.workdir, card, args.photos)
    say(f"\nload average at end: {load()}")


if __name__ == "__main__":
    main()
