#!/usr/bin/env python3
"""A whole ``ibsearch query`` process, start to answer, with this checkout's code and another's.

Each run is a fresh Python process that runs the real CLI (``ibsearch query ... --json``) on the same
library, with this checkout's ``ibsearch`` or ``--code``'s (e.g. ``git archive <commit> | tar -x -C DIR``),
the two interleaved ``--runs`` times. Printed per run: seconds, whether the process loaded torch, and at
the end the best of each and their ratio, and whether both found the same hits. The processes run from
a neutral folder, so that neither picks up the other's code from the current directory.

Usage:  python scripts/bench_cli_query.py --library LIB --model CARD --code DIR [--runs 3] -- QUERY ARGS
        e.g. ... -- --like /bench/audio/0000001.wav
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Runs the CLI in the child, then says on its last line of stderr whether torch was loaded.
_CHILD = (
    "import sys\nfrom ibsearch.cli import cli\ncode = 0\n"
    "try:\n    cli(sys.argv[1:])\nexcept SystemExit as end:\n    code = end.code\n"
    "print('torch loaded' if 'torch' in sys.modules else 'no torch', file=sys.stderr)\nsys.exit(code)\n"
)


def one_run(code: Path, args: list[str]) -> tuple[float, bool, list[dict]]:
    """Seconds of one CLI process with ``code``'s ibsearch, whether it loaded torch, and its hits."""
    env = dict(os.environ, PYTHONPATH=str(code))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "query", *args, "--json"],
        capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the query failed with {code}'s code:\n{done.stderr[-2000:]}")
    return seconds, done.stderr.strip().endswith("torch loaded"), json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--library", required=True)
    ap.add_argument("--model", required=True, help="the library's model card")
    ap.add_argument("--code", type=Path, required=True, help="the other checkout (holding ibsearch/)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("query", nargs=argparse.REMAINDER, help="-- then the query's own arguments")
    args = ap.parse_args()
    query = [a for a in args.query if a != "--"]
    common = [*query, "--library", args.library, "--model", args.model, "--device", "cpu"]
    ways = {"this checkout": REPO, f"{args.code}": args.code}
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    hits: dict[str, list[dict]] = {}
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    print(f"CPU {cpu}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} before")
    for run in range(args.runs):
        for way, code in ways.items() if run % 2 == 0 else reversed(ways.items()):
            took, torch_loaded, hits[way] = one_run(code, common)
            seconds[way].append(took)
            print(f"run {run + 1}, {way}: {took:.2f} s, {'torch loaded' if torch_loaded else 'no torch'}")
    best = {way: min(values) for way, values in seconds.items()}
    first, second = best.values()
    same = [h["path"] for h in hits["this checkout"]] == [h["path"] for h in hits[f"{args.code}"]]
    print(f"best: this checkout {first:.2f} s, {args.code} {second:.2f} s: {second / first:.2f}x")
    print(f"same hits: {same}")
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
