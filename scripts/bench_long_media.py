#!/usr/bin/env python3
"""Long-media memory benchmark: peak RSS while ingesting a one-hour recording, above the model's own
footprint, next to loading the same file whole the way the reference pipeline does (decode everything,
resample everything), each in a fresh process.

Usage:  .venv/bin/python scripts/bench_long_media.py [--minutes 60] [--rate 44100] [--channels 2]
The recording and the library go to a temporary folder (about 10 MB per minute at 44.1 kHz stereo).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

# Peaks come from /proc/self/status (VmHWM): getrusage's ru_maxrss survives fork and exec on Linux.
_HWM = (
    "def hwm():\n"
    "    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
)

_INGEST = (
    _HWM
    + r"""
import json, sys, time
from ibsearch.engine import Library
lib_dir, card, media = sys.argv[1:4]
with Library.open(lib_dir, model=card, device="cpu", create=True) as lib:
    lib.encoder().load(["audio"])
    base = hwm()
    start = time.perf_counter()
    summary = lib.ingest([media], workers=0).to_dict()
    wall = time.perf_counter() - start
    peak = hwm()
    counts = lib.store.vectors.counts()
print(json.dumps({"base_kb": base, "peak_kb": peak, "wall": wall, "summary": summary, "counts": counts}))
"""
)

_WHOLE = (
    _HWM
    + r"""
import json, sys, time
import torch
from ibsearch.encoder import preprocess
torch.zeros(1)
base = hwm()
start = time.perf_counter()
preprocess.load("audio", sys.argv[1])
print(json.dumps({"base_kb": base, "peak_kb": hwm(),
                  "wall": time.perf_counter() - start}))
"""
)


def write_recording(path: Path, minutes: float, rate: int, channels: int) -> None:
    """A long WAV written minute by minute (tones that change every 10 s, plus noise)."""
    rng = np.random.default_rng(0)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        for minute in range(int(minutes)):
            t = np.arange(60 * rate) / rate
            freq = 200 + 40 * ((minute * 6 + (t // 10)) % 30)
            sig = 0.3 * np.sin(2 * np.pi * freq * t) + 0.03 * rng.normal(size=t.shape)
            frames = np.repeat(sig[:, None], channels, axis=1)
            w.writeframes((frames * 32767).astype("<i2").tobytes())


def run(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--rate", type=int, default=44100)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--skip-whole", action="store_true", help="do not run the whole-file comparison")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ibsearch-long-"))
    os.environ.setdefault("IBSEARCH_CACHE", str(work / "cache"))
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_ingest import make_card

    media = work / "media"
    media.mkdir()
    wav = media / "one_hour.wav"
    t0 = time.perf_counter()
    write_recording(wav, args.minutes, args.rate, args.channels)
    print(f"recording: {args.minutes:g} min, {args.rate} Hz, {args.channels} ch, "
          f"{wav.stat().st_size / 1e6:.0f} MB ({time.perf_counter() - t0:.0f} s to write)")  # fmt: skip
    card = make_card(work / "models", "imagebind_tiny")
    ours = run(_INGEST, str(work / "lib"), str(card), str(media))
    above = (ours["peak_kb"] - ours["base_kb"]) / 1e6
    peak, base = ours["peak_kb"] / 1e6, ours["base_kb"] / 1e6
    print(
        f"ibsearch ingest: {ours['wall']:.0f} s, peak RSS {peak:.2f} GB, with the model loaded {base:.2f} GB"
    )
    print(f"above the model: {above:.2f} GB; vectors {ours['counts']}")
    print()
    print("| approach | peak RSS above baseline | wall | note |")
    print("|---|---|---|---|")
    print(f"| ibsearch ingest (stream, segments + file vector) | {above:.2f} GB | {ours['wall']:.0f} s "
          f"| {ours['counts'].get('audio.segments', 0)} segments |")  # fmt: skip
    if not args.skip_whole:
        whole = run(_WHOLE, str(wav))
        above_whole = (whole["peak_kb"] - whole["base_kb"]) / 1e6
        print(f"| whole-file load (reference approach, features only) | {above_whole:.2f} GB | "
              f"{whole['wall']:.0f} s | file-level features only |")  # fmt: skip
        print(f"\nratio: {above_whole / max(above, 1e-9):.1f}x less memory above baseline")


if __name__ == "__main__":
    main()
