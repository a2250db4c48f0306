#!/usr/bin/env python3
"""How right an ingest's "time left" is: one real ingest of a folder with one long recording among
short ones, its progress reports recorded, and at each report the time left estimated two ways at the
average rate so far, next to the time that really remained:

- by work (ours): the model's inputs, planned per file from its probe (a 6 s window of sound each);
- by files (the code before): files under way out of all files, as the old bar counted.

Usage:  .venv/bin/python scripts/bench_eta.py [--short 10] [--long-seconds 300] [--model CARD]
Without --model a random-weight imagebind_tiny is written to the temporary folder (the estimate's
error comes from how work is counted, not from the model's size).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import tempfile
import time
import wave
from pathlib import Path

SHORT = Path(__file__).resolve().parent.parent / "tests" / "data" / "audio" / "mix_16000_mono_s16_5p3s.wav"


def make_folder(root: Path, shorts: int, long_seconds: float) -> Path:
    folder = root / "media"
    folder.mkdir()
    with wave.open(str(SHORT)) as src:
        params, frames = src.getparams(), src.readframes(src.getnframes())
        length = src.getnframes() / src.getframerate()
    with wave.open(str(folder / "long.wav"), "wb") as out:
        out.setparams(params)
        out.writeframes(frames * max(1, math.ceil(long_seconds / length)))
    for i in range(shorts):
        shutil.copy(SHORT, folder / f"short_{i:03d}.wav")
    return folder


def tiny_card(root: Path) -> str:
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    write_random_checkpoint(get_config("imagebind_tiny"), root / "tiny.pth", seed=7)
    card = root / "tiny.json"
    card.write_text(json.dumps({"name": "tiny-bench", "config": "imagebind_tiny", "checkpoint": "tiny.pth"}))
    return str(card)


def record_ingest(folder: Path, library: Path, card: str) -> list[tuple[float, int, int, str | None]]:
    """(when, inputs done, inputs planned, file under way) at each report of the ingest task."""
    from ibsearch.engine import Library

    seen: list[tuple[float, int, int, str | None]] = []

    def progress(task: str, unit: str):  # type: ignore[no-untyped-def]
        def update(done: int, total: int | None, current: str | None = None) -> None:
            if task == "ingest":
                seen.append((time.monotonic(), done, total or 0, current))

        return update

    with Library.open(str(library), model=card, device="cpu", create=True) as lib:
        lib.encoder().load(["audio"])  # the model's load is not the ingest's work
        lib.ingest([str(folder)], progress=progress)
    return seen


def errors(seen: list[tuple[float, int, int, str | None]], files: int) -> dict[str, list[float]]:
    """|log2(estimate / real time left)| per report that gives one, by work and by files, while 5 s
    or more remain (the last model call's length is noise then)."""
    from ibsearch.cli.screen import REDRAW_SECONDS

    began, end = seen[0][0], seen[-1][0]
    under_way: set[str] = set()
    out: dict[str, list[float]] = {"work": [], "files": []}
    drawn = -math.inf
    for at, done, total, current in seen:
        if current is not None:
            under_way.add(current)
        real, spent = end - at, at - began
        if real < 5.0 or spent < 1.0 or at - drawn < REDRAW_SECONDS:  # judged as often as it is drawn
            continue
        drawn = at
        for name, part, whole in (("work", done, total), ("files", len(under_way), files)):
            if part:  # nothing done yet: no rate, no estimate shown
                left = (whole - part) * spent / part
                out[name].append(abs(math.log2(max(left, 0.01) / real)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long-seconds", type=float, default=300.0)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = make_folder(root, args.short, args.long_seconds)
        card = args.model or tiny_card(root)
        started = time.monotonic()
        seen = record_ingest(folder, root / "lib", card)
        wall = time.monotonic() - started
    found = errors(seen, args.short + 1)
    print(f"{args.short} files of 5.3 s and one of {args.long_seconds:g} s; ingest {wall:.1f} s; "
          f"{len(found['work'])} and {len(found['files'])} reports judged (5 s or more left)")  # fmt: skip
    print(f"{'time left by':<14}{'within x2':>11}{'median off':>12}{'worst off':>11}")
    for name in ("work", "files"):
        offs = found[name]
        inside = sum(off <= 1.0 for off in offs) / len(offs)
        print(f"{name:<14}{inside:>10.0%}{2 ** statistics.median(offs):>11.2f}x{2 ** max(offs):>10.1f}x")


if __name__ == "__main__":
    main()
