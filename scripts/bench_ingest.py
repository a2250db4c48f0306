#!/usr/bin/env python3
"""Ingest benchmark: files/s on real media with the tiny and a random-weight huge model, the cost of a
no-op re-ingest of 10k unchanged files, and a cold text query on the huge library.

Each figure is printed next to what it is compared with, measured in the same run:
- ingest throughput: ours (parallel decode + batched model) vs the simple loop a user would write
  (decode one file at a time in the main process, batch 8, fp32);
- no-op re-ingest: vs the first ingest of the same files;
- cold text query: wall time and peak RSS of a fresh ``ibsearch query --text`` process.

Usage:  .venv/bin/python scripts/bench_ingest.py [--images 32] [--audio 16] [--noop-files 10000] [--skip-huge]
Everything is written under --work (default: a temporary folder), never into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def make_images(folder: Path, count: int) -> list[Path]:
    """Photo-like 640x480 JPEGs: smooth colour fields, shapes and sensor-like noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    out = []
    for i in range(count):
        a, b, c = rng.uniform(0, 2 * np.pi, 3)
        img = np.stack(
            [127 + 100 * np.sin(xx / (40 + 7 * i % 50) + a), 127 + 100 * np.cos(yy / 55 + b),
             127 + 100 * np.sin((xx + yy) / 70 + c)], axis=-1,
        )  # fmt: skip
        img += rng.normal(0, 12, img.shape)
        path = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        out.append(path)
    return out


def make_audio(folder: Path, count: int, seconds: float = 8.0, rate: int = 44100) -> list[Path]:
    """Stereo 16-bit WAVs at 44.1 kHz (so the resampler runs): tones, chirps and noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    t = np.arange(int(seconds * rate)) / rate
    out = []
    for i in range(count):
        sig = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.2 * np.sin(2 * np.pi * (300 + 400 * t) * t)
        sig = sig + 0.05 * rng.normal(size=t.shape)
        stereo = np.stack([sig, np.roll(sig, 100)], axis=1)
        path = folder / f"sound_{i:04d}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes((np.clip(stereo, -1, 1) * 32767).astype("<i2").tobytes())
        out.append(path)
    return out


def make_card(folder: Path, config: str, seed: int = 0) -> Path:
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / f"{config}.pth"
    if not ckpt.exists():
        write_random_checkpoint(get_config(config), ckpt, seed=seed)
    card = folder / f"{config}.json"
    card.write_text(json.dumps({"name": f"{config}-random", "config": config, "checkpoint": ckpt.name}))
    return card


# Peak RSS is read from /proc/self/status (VmHWM): getrusage's ru_maxrss survives fork and exec on
# Linux, so a child started by a big parent would report the parent's peak.
_RUNNER = (
    "import runpy, sys\n"
    "sys.argv = ['ibsearch'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('ibsearch', run_name='__main__')\n"
    "finally:\n"
    "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "    sys.stderr.write('\\nMAXRSS_KB=' + hwm + '\\n')\n"
)


def cli(args: list[str]) -> tuple[float, dict | list, int]:
    """Run the real CLI in a fresh process: (wall seconds, JSON output, that process's peak RSS in bytes)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, *args, "--json"], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ibsearch {' '.join(args)} failed:\n{done.stderr}")
    peak_kb = int(done.stderr.rsplit("MAXRSS_KB=", 1)[1].split()[0])
    return wall, json.loads(done.stdout), peak_kb * 1024


def simple_loop(card: Path, files: list[Path], modality: str) -> float:
    """What a user would write: decode one file at a time in this process, batches of 8, fp32. Seconds."""
    import torch

    from ibsearch.encoder import preprocess
    from ibsearch.encoder.runtime import Encoder
    from ibsearch.encoder.weights.cards import resolve_model

    encoder = Encoder(resolve_model(str(card)), device="cpu", precision="fp32", batch_size=8, progress=False)
    encoder.load([modality])
    start = time.perf_counter()
    for i in range(0, len(files), 8):
        batch = torch.stack([preprocess.load(modality, str(p)) for p in files[i : i + 8]])
        encoder.encode(modality, batch)
    return time.perf_counter() - start


def ingest_rate(card: Path, lib_dir: Path, folder: Path, modality: str, n: int) -> tuple[float, dict]:
    """Files/s of ``Library.ingest`` on ``folder`` (model already loaded, as in a long-running ingest)."""
    from ibsearch.engine import Library

    shutil.rmtree(lib_dir, ignore_errors=True)
    with Library.open(lib_dir, model=str(card), device="cpu", create=True) as lib:
        lib.encoder().load([modality])
        start = time.perf_counter()
        summary = lib.ingest([str(folder)])
        wall = time.perf_counter() - start
    return n / wall, summary.to_dict()


def _subset(files: list[Path], folder: Path, n: int) -> list[Path]:
    """The first ``n`` files, hard-linked into a folder of their own (an ingest takes whole folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in files[:n]:
        dst = folder / src.name
        if not dst.exists():
            os.link(src, dst)
        out.append(dst)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32, help="images per run with the huge model")
    ap.add_argument("--audio", type=int, default=16, help="audio files per run with the huge model")
    ap.add_argument("--tiny-images", type=int, default=200, help="images per run with the tiny model")
    ap.add_argument("--tiny-audio", type=int, default=64, help="audio files per run with the tiny model")
    ap.add_argument("--noop-files", type=int, default=10_000)
    ap.add_argument("--skip-huge", action="store_true")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ibsearch-bench-"))
    os.environ.setdefault("IBSEARCH_CACHE", str(work / "cache"))
    print(f"work folder: {work}")
    all_images = make_images(work / "media" / "images", max(args.images, args.tiny_images))
    all_sounds = make_audio(work / "media" / "audio", max(args.audio, args.tiny_audio))
    rows = []
    models = ["imagebind_tiny"] + ([] if args.skip_huge else ["imagebind_huge"])
    for config in models:
        n_img, n_aud = (
            (args.tiny_images, args.tiny_audio) if config == "imagebind_tiny" else (args.images, args.audio)
        )
        images = _subset(all_images, work / "media" / f"images-{n_img}", n_img)
        sounds = _subset(all_sounds, work / "media" / f"audio-{n_aud}", n_aud)
        t0 = time.perf_counter()
        card = make_card(work / "models", config)
        print(f"[{config}] random checkpoint ready in {time.perf_counter() - t0:.0f} s")
        # Warm-up: a one-file ingest splits the checkpoint into per-tower files (one time per checkpoint).
        warm = work / "warm"
        warm.mkdir(exist_ok=True)
        shutil.copy(images[0], warm / "a.jpg")
        shutil.copy(sounds[0], warm / "a.wav")
        cli(["ingest", str(warm), "--library", str(work / f"lib-warm-{config}"), "--model", str(card)])
        for kind, files in (("images", images), ("audio", sounds)):
            folder = files[0].parent
            modality = "vision" if kind == "images" else "audio"
            ours, summary = ingest_rate(card, work / f"lib-{config}-{kind}", folder, modality, len(files))
            loop = len(files) / simple_loop(card, files, modality)
            rows.append((config, kind, len(files), ours, loop, summary["encoded"]))
            print(f"[{config}] {kind}: ours {ours:.2f} files/s, simple loop {loop:.2f} files/s")
        if config == "imagebind_huge":
            lib = work / "lib-imagebind_huge-images"
            wall, hits, peak = cli(["query", "--text", "a dog barking", "--library", str(lib), "--k", "5"])
            print(
                f"[huge] cold text query: {wall:.2f} s wall, peak RSS {peak / 1e9:.2f} GB, {len(hits)} hits"
            )
            rows.append(("imagebind_huge", "cold text query", 1, wall, peak / 1e9, 0))

    # No-op re-ingest of many unchanged files (tiny model; the cost is walking and stat-ing).
    noop = work / "noop"
    if not noop.exists():
        for i in range(args.noop_files):
            sub = noop / f"d{i // 500:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"note_{i:05d}.txt").write_text(f"note number {i}: a short text about item {i % 97}")
    card = make_card(work / "models", "imagebind_tiny")
    lib = work / "lib-noop"
    shutil.rmtree(lib, ignore_errors=True)
    first, s1, _ = cli(["ingest", str(noop), "--library", str(lib), "--model", str(card)])
    again, s2, _ = cli(["ingest", str(noop), "--library", str(lib), "--model", str(card)])
    assert isinstance(s2, dict) and s2["encoded"] == 0 and s2["unchanged"] == args.noop_files, s2
    print(f"no-op re-ingest of {args.noop_files} files: {again:.2f} s (first ingest {first:.2f} s)")

    print()
    print("| model | input | files | ibsearch ingest (files/s) | simple loop (files/s) | ratio |")
    print("|---|---|---|---|---|---|")
    for config, kind, n, ours, loop, _ in rows:
        if kind == "cold text query":
            continue
        print(f"| {config} | {kind} | {n} | {ours:.2f} | {loop:.2f} | {ours / loop:.2f}x |")
    print()
    print("| measurement | value | compared with | ratio |")
    print("|---|---|---|---|")
    print(
        f"| no-op re-ingest, {args.noop_files} unchanged files | {again:.2f} s | first ingest {first:.2f} s "
        f"| {first / again:.1f}x faster |"
    )
    for config, kind, _, wall, peak_gb, _ in rows:
        if kind == "cold text query":
            print(f"| cold text query, {config} (random weights) | {wall:.2f} s wall | goal 3 s | - |")
            print(f"| peak RSS of that query process | {peak_gb:.2f} GB | goal 2.5 GB | - |")


if __name__ == "__main__":
    main()
