#!/usr/bin/env python3
"""Import memory benchmark: a shard of one long file's segment rows, 10,000 rows and 1,000,000, each
imported with ``ibsearch import``'s code (``Library.import_vectors``) into a fresh library in a fresh
process, side by side: wall time and peak resident memory (VmHWM of the importing process).

Usage:  .venv/bin/python scripts/bench_import.py [--rows 10000 1000000] [--dim 16] [--folder DIR]
        [--index auto|exact|FACTORY]   (the libraries' index kind, as 'reindex --index'; default auto)
        [--code CHECKOUT]   (the imports run that checkout's ibsearch, e.g. the code before a change)

The hostile shard of the report: every row is an ``audio.segments`` vector of the same path (one
file of a million segments), which before the fix was held whole, as Python objects, until its one
transaction. The libraries use a random-weight model card of the ``imagebind_tiny`` config with its
embedding width set to ``--dim`` (the import needs only a model's name and width, never its weights;
a narrow width keeps a million vectors at 64 MB on disk, so the figures show the reader, the store and
the indexes, not the disk), and the library's default index policy: exact below 100,000 vectors, so
the 10,000-row library stays exact and the million-row one gets the approximate index the policy
gives that size, built from the database when the import ends. The vectors are unit vectors around
64 centres (embedding-like, the same generator for every size). At width 16 the approximate index's
4-bit codes of 4 dimensions miss the recall target on these vectors, so the policy declines it (on
its training sample) and keeps the exact index, which the save writes from the database a chunk at a
time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_sensor_memory import cpu_model  # the same lscpu line as the other memory bench

PATH = "/bench/long-recording.wav"
REPO = Path(__file__).resolve().parent.parent

# Imports one shard in this fresh interpreter and reports its peak resident memory (VmHWM, which
# unlike getrusage's ru_maxrss is not inherited across fork and exec) before and after.
_IMPORT = r"""
import json, sys, time
from ibsearch.engine import Library
def peak_kb():
    with open("/proc/self/status") as status:
        return int(next(l for l in status if l.startswith("VmHWM")).split()[1])
card, library, shard, kind = sys.argv[1:5]
stored_kb = [0]
def progress(task, unit):
    # Called once the rows are stored and added to the indexes, before the indexes are saved.
    return lambda done, total: stored_kb.__setitem__(0, peak_kb())
with Library.open(library, model=card, device="cpu", create=True) as lib:
    if kind != "auto":
        lib.reindex(index=kind)
    base = peak_kb()
    start = time.perf_counter()
    summary = lib.import_vectors([shard], progress=progress)  # its indexes saved (and rebuilt) too
    wall, peak = time.perf_counter() - start, peak_kb()  # before the checks below read the files
    stored = lib.store.vectors.count()
    index = lib.index("audio.segments")
    assert index.ntotal == stored and lib.check(repair=False).ok
print(json.dumps({"base_kb": base, "peak_kb": peak, "stored_kb": stored_kb[0], "wall": wall,
                  "vectors": summary.vectors, "stored": stored, "failed": len(summary.failed),
                  "spec": index.spec, "rebuilt": sorted(lib.indexes.rebuilt)}))
"""


def write_card(folder: Path, dim: int) -> Path:
    """A model card of ``imagebind_tiny`` with embedding width ``dim`` and random weights."""
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    config = get_config("imagebind_tiny").to_dict()
    config["out_embed_dim"] = dim
    card = folder / "bench.json"
    card.write_text(json.dumps({"name": f"bench-{dim}", "config": config, "checkpoint": "bench.pth"}))
    from ibsearch.encoder.weights.cards import load_card

    write_random_checkpoint(load_card(card).config, folder / "bench.pth", seed=1)
    return card


def write_shard(path: Path, rows: int, dim: int, model: str) -> None:
    """``rows`` one-second segments of one path, unit vectors around 64 centres, written 50,000 rows at
    a time."""
    from ibsearch.ingest.commit import PREPROCESS_VERSION
    from ibsearch.shards import ShardRow, ShardWriter

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    with ShardWriter(path, model_id=model, dim=dim, preprocess_version=PREPROCESS_VERSION) as writer:
        for first in range(0, rows, 50_000):
            count = min(50_000, rows - first)
            vectors = centres[rng.integers(64, size=count)] * 1.5
            vectors += rng.standard_normal((count, dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            meta = {"duration": float(rows)}
            segments = [
                ShardRow(PATH, "audio.segments", float(s), float(s + 1), meta if s == 0 else None)
                for s in range(first, first + count)
            ]
            writer.write(segments, vectors)


def in_fresh_process(code: str, *args: object, repo: Path = REPO) -> dict:
    """Run ``code`` in a fresh interpreter with ``args`` and ``repo``'s ibsearch; returns the JSON its
    last line prints."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=repo,  # "python -c" puts its folder first on the path: the checkout's, not the caller's
    )
    if done.returncode != 0:
        raise SystemExit(f"a benchmark process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(kb: float) -> str:
    return f"{kb / 1024:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000], help="rows per shard")
    parser.add_argument("--dim", type=int, default=16, help="embedding width of the bench model")
    parser.add_argument("--folder", type=Path, help="where to write shards and libraries (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    parser.add_argument("--index", default="auto", help="the libraries' index kind (default: auto)")
    parser.add_argument("--code", type=Path, help="import with this checkout's ibsearch (default: this one)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_import_", dir=args.folder))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"CPU: {cpu_model()}; {os.cpu_count()} CPUs; load average (1, 5, 15 min) {load}")
    print(f"files in {folder}; model width {args.dim}; one path, audio.segments rows; index kind "
          f"{args.index}; code: {args.code or 'this checkout'}")  # fmt: skip
    print(f"{'rows':>10} {'shard':>9} {'wall':>8} {'rows/s':>9} {'peak RSS':>9} {'before import':>13} "
          f"{'import adds':>11} {'peak, stored':>12} {'index files':>11}  index")  # fmt: skip
    peaks = []
    try:
        card = write_card(folder, args.dim)
        for rows in args.rows:
            shard = folder / f"segments-{rows}.parquet"
            write_shard(shard, rows, args.dim, f"bench-{args.dim}")
            code = {"repo": args.code} if args.code else {}
            run = in_fresh_process(_IMPORT, card, folder / f"lib-{rows}", shard, args.index, **code)
            assert run["stored"] == run["vectors"] == rows and not run["failed"], run
            files = sum(p.stat().st_size for p in (folder / f"lib-{rows}").rglob("audio.segments.faiss*"))
            peaks.append(run["peak_kb"])
            rebuilt = " (built when the import ended)" if run["rebuilt"] else ""
            print(
                f"{rows:>10,} {shard.stat().st_size / 1e6:>7.1f}MB {run['wall']:>7.1f}s "
                f"{rows / run['wall']:>9,.0f} {mib(run['peak_kb']):>9} {mib(run['base_kb']):>13} "
                f"{mib(run['peak_kb'] - run['base_kb']):>11} {mib(run['stored_kb']):>12} "
                f"{mib(files / 1024):>11}  {run['spec']}{rebuilt}"
            )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"peak RSS, largest shard over smallest: {peaks[-1] / peaks[0]:.2f} (target <= 1.5)")
    print(
        "peak RSS: VmHWM of the fresh process, which imports Python, numpy, pyarrow, faiss and ibsearch "
        "first; 'before import': VmHWM just before import_vectors; 'peak, stored': VmHWM once every row "
        "is stored and added to the in-memory indexes, before they are saved and rebuilt (the last "
        "progress report); 'index files': the key's saved index files (about what its index holds in "
        "memory). Load average after the runs: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


if __name__ == "__main__":
    main()
