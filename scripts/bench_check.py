"""How long ``ibsearch check`` takes on a library of N vectors: the full check against the id-summary one.

The full check (what ``check`` does since the hostile-input fixes) reads every stored vector, tests
that it is a finite unit vector and compares it bit for bit with its index row. The cheap check it
extends compares only the id summary (count, max id, checksum) of the database with each index file.
Both run on the same library here, built without a model: N random unit vectors in one modality,
written through the store and indexed as an ingest would.

    python scripts/bench_check.py --vectors 100000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ibsearch import maintenance
from ibsearch.engine import Library
from ibsearch.integrity import scan, verify_file
from ibsearch.store import FileEntry, VectorEntry


def build(root: Path, n: int, dim: int, card: Path) -> None:
    """A library of ``n`` one-vector "files" with random unit vectors (no model needed)."""
    rng = np.random.default_rng(0)
    with Library.open(root, model=str(card), device="cpu", create=True) as lib, lib.writing():
        lib.bind_model()
        store = lib.store
        batch = 2000
        for start in range(0, n, batch):
            vecs = rng.standard_normal((min(batch, n - start), dim)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            ids = []
            with store.transaction():
                for i, vec in enumerate(vecs):
                    file = FileEntry(f"/bench/{start + i:07d}.jpg", 1, 1, f"{start + i:064x}", "vision")
                    up = store.upsert_file(file, [VectorEntry(vec, "vision")])
                    ids += up.vector_ids
            lib.indexes.add("vision", ids, vecs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=100_000)
    args = parser.parse_args()
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.cards import ModelCard, save_card

    with tempfile.TemporaryDirectory(prefix="bench_check_") as tmp:
        root = Path(tmp) / "lib"
        card = save_card(ModelCard("bench-random", get_config("imagebind_tiny"), str(Path(tmp) / "none.pth")),
                         Path(tmp) / "card.json")  # fmt: skip
        started = time.perf_counter()
        build(root, args.vectors, 1024, card)
        built = time.perf_counter() - started
        with Library.open(root, model=str(card), device="cpu") as lib:
            started = time.perf_counter()
            summary_problems = verify_file(lib.store, lib.indexes, "vision")
            cheap = time.perf_counter() - started
            started = time.perf_counter()
            findings = scan(lib.store, lib.indexes, "vision")
            full_scan = time.perf_counter() - started
            started = time.perf_counter()
            report = maintenance.check(lib)
            whole = time.perf_counter() - started
        size = (root / "ibsearch.db").stat().st_size
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"
    )
    print(f"machine: {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"library: {args.vectors} vectors x 1024 (database {size / 1e6:.0f} MB), built in {built:.1f} s")
    print(f"id-summary check (the old check):       {cheap:7.3f} s   problems: {len(summary_problems)}")
    print(f"full scan (vectors + index rows):       {full_scan:7.3f} s   vectors read: {findings.vectors}")
    print(f"ibsearch check as a whole (both, quick_check): {whole:7.3f} s   ok: {report.ok}")
    print(f"ratio full / id-summary: {full_scan / max(cheap, 1e-9):.1f}x")
    for problem in summary_problems + findings.problems + report.problems:
        print("PROBLEM:", problem)


if __name__ == "__main__":
    main()
