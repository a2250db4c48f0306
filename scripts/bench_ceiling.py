#!/usr/bin/env python3
"""Ingest at the compute ceiling: end-to-end ingest of real JPEGs next to the vision tower alone.

On the same real pictures (JPEGs from Debian packages, see ENVIRONMENT.md, or ``--jpegs DIR``), with a
random-weight ``imagebind_huge`` vision tower (small-init weights, ``write_random_checkpoint``), per
precision (``--precisions fp32,int8``), in one process with one loaded model:

* **tower only**: the pictures decoded beforehand, then ``Encoder.encode`` on batches of ``--batch``;
* **end to end**: ``Library.ingest`` of the same pictures (walk, hash, decode, encode, SQLite, FAISS);
* **decode only**: ``preprocess.load`` of each picture in this process (what the model waits for
  unless decoding overlaps it).

The two are interleaved folder by folder (a folder of ``--per-folder`` pictures, default ``--batch``, is
ingested right after the tower-only run of the same pictures in batches of ``--batch``), so the load
of a shared machine weighs on both alike. Printed: images/s of each, end-to-end / tower-only (target >= 90 %),
and the decode share. ``--audio N`` adds the audio tower end to end on N generated 8 s WAVs
(files/s; no tower-only column).

``--ab-workers N`` ingests every second folder with ``workers=N`` and reports those folders in a row
of their own (``--ab-workers 0``: decoding on one thread, against the automatic choice).

Usage:  .venv/bin/python scripts/bench_ceiling.py [--images 16] [--batch 4] [--per-folder 0] [--ab-workers N]
        [--precisions fp32,int8] [--device cpu|cuda] [--jpegs DIR] [--work DIR] [--json-out FILE]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import make_audio  # noqa: E402  (generated WAVs, shared with the ingest benchmark)
from bench_real_folder import download  # noqa: E402  (apt-get download, shared)

#: Debian packages whose JPEGs are real photographs and renders (flowers, wallpapers, game scenery).
JPEG_PACKAGES = ["libjxl-testdata", "desktop-base", "pingus-data"]


def real_jpegs(work: Path, given: Path | None, n: int) -> list[Path]:
    """``n`` real JPEGs of at least 20 kB: from ``given`` or unpacked from :data:`JPEG_PACKAGES`."""
    if given is None:
        for deb in download(JPEG_PACKAGES, work / "debs"):
            unpacked = work / "unpacked" / deb.name.split("_")[0]
            if not unpacked.exists():
                unpacked.parent.mkdir(parents=True, exist_ok=True)  # dpkg -x makes the last folder only
                subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
        given = work / "unpacked"
    found = sorted(p for p in given.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())
    found = [p for p in found if p.stat().st_size >= 20_000]
    if not found:
        raise SystemExit(f"no JPEG of 20 kB or more under {given}")
    return [found[i % len(found)] for i in range(n)]  # repeated when there are fewer (copied apart)


def make_card(work: Path, modalities: list[str], config: str = "imagebind_huge") -> Path:
    """A card for a random ``config`` model holding only ``modalities`` (safetensors, small init)."""
    from ibsearch.encoder.model.config import get_config
    from ibsearch.encoder.weights.random_weights import write_random_checkpoint

    name = f"{config}-{'-'.join(modalities)}"
    ckpt = work / f"{name}.safetensors"
    if not ckpt.exists():
        work.mkdir(parents=True, exist_ok=True)
        write_random_checkpoint(get_config(config), ckpt, seed=0, fmt="safetensors", modalities=modalities)
    card = work / f"{name}.json"
    card.write_text(json.dumps({"name": f"bench-{name}", "config": config, "checkpoint": ckpt.name}))
    return card


def batch_folders(work: Path, jpegs: list[Path], batch: int) -> list[list[Path]]:
    """The pictures copied into folders of ``batch`` (distinct names: a copy would reuse vectors)."""
    folders = []
    for start in range(0, len(jpegs), batch):
        folder = work / "pictures" / f"batch{start // batch:03d}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        files = []
        for i, src in enumerate(jpegs[start : start + batch]):
            dst = folder / f"{start + i:04d}-{src.name}"
            shutil.copyfile(src, dst)
            with open(dst, "ab") as fh:  # after the JPEG's end marker: new hash, same picture
                fh.write(b"%d" % (start + i))
            files.append(dst)
        folders.append(files)
    return folders


def ceiling_row(
    args: argparse.Namespace, card: Path, folders: list[list[Path]], precision: str
) -> list[dict]:
    """Tower-only and end-to-end seconds on the same pictures, batch by batch, one loaded model: one row,
    or with ``--ab-workers N`` two, every second folder ingested with ``workers=N``."""
    import torch

    from ibsearch.encoder import preprocess
    from ibsearch.engine import Library

    lib_dir = args.work / f"lib-{precision}"
    shutil.rmtree(lib_dir, ignore_errors=True)
    ways = ["auto"] if args.ab_workers is None else ["auto", f"workers {args.ab_workers}"]
    seconds = {way: {"tower": 0.0, "ingest": 0.0, "decode": 0.0, "images": 0} for way in ways}
    with Library.open(lib_dir, model=str(card), device=args.device, precision=precision, create=True) as lib:
        encoder = lib.encoder(args.batch)
        encoder.encode("vision", preprocess.load("vision", str(folders[0][0]))[None])  # load + warm up
        for number, files in enumerate(folders):
            way = ways[number % len(ways)]
            spent = seconds[way]
            start = time.perf_counter()
            pictures = torch.stack([preprocess.load("vision", str(p)) for p in files])
            spent["decode"] += time.perf_counter() - start
            start = time.perf_counter()
            for first in range(0, len(pictures), args.batch):  # the batches an ingest of the folder makes
                encoder.encode("vision", pictures[first : first + args.batch])
            spent["tower"] += time.perf_counter() - start
            workers = None if way == "auto" else args.ab_workers
            start = time.perf_counter()
            summary = lib.ingest([str(files[0].parent)], batch_size=args.batch, workers=workers)
            spent["ingest"] += time.perf_counter() - start
            spent["images"] += len(files)
            if summary.added != len(files):
                raise SystemExit(
                    f"ingest of {files[0].parent} added {summary.added} of {len(files)}: {summary}"
                )
        resolved = encoder.precision
    rows = []
    for way, spent in seconds.items():
        n = spent["images"]
        name = resolved if way == "auto" else f"{resolved} ({way})"
        say(f"[{name}] tower {n / spent['tower']:.3f} img/s, end to end {n / spent['ingest']:.3f} img/s")
        rows.append({
            "precision": name,
            "images": n,
            "tower_images_s": n / spent["tower"],
            "ingest_images_s": n / spent["ingest"],
            "ratio": spent["tower"] / spent["ingest"],
            "decode_images_s": n / spent["decode"],
            "decode_share": spent["decode"] / spent["ingest"],
        })  # fmt: skip
    return rows


def audio_row(args: argparse.Namespace, precision: str) -> dict:
    """End-to-end audio files/s (the huge audio tower, 8 s stereo 44.1 kHz WAVs)."""
    from ibsearch.engine import Library

    card = make_card(args.work / "models", ["audio"], args.config)
    sounds = make_audio(args.work / "sounds", args.audio)
    warm = args.work / "sounds-warm"
    warm.mkdir(exist_ok=True)
    shutil.copy(sounds[0], warm / "warm.wav")
    lib_dir = args.work / f"lib-audio-{precision}"
    shutil.rmtree(lib_dir, ignore_errors=True)
    with Library.open(lib_dir, model=str(card), device=args.device, precision=precision, create=True) as lib:
        lib.ingest([str(warm)], batch_size=args.batch)  # loads the tower
        start = time.perf_counter()
        summary = lib.ingest([str(sounds[0].parent)], batch_size=args.batch)
        wall = time.perf_counter() - start
    return {"precision": precision, "files": summary.added, "audio_files_s": summary.added / wall}


def print_report(jpegs: list[Path], rows: list[dict], audio: list[dict]) -> None:
    mean_kb = sum(p.stat().st_size for p in jpegs) / len(jpegs) / 1e3
    print(f"{len(jpegs)} real JPEGs ({mean_kb:.0f} kB mean)")
    print("\n| precision | images | tower only (img/s) | end to end (img/s) | end to end / tower | "
          "decode only, 1 process (img/s) | decode share of end to end |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['images']} | {r['tower_images_s']:.3f} | {r['ingest_images_s']:.3f} "
              f"| {r['ratio']:.1%} | {r['decode_images_s']:.1f} | {r['decode_share']:.1%} |")  # fmt: skip
    for r in rows[1:]:
        tower, end_to_end = (r[k] / rows[0][k] for k in ("tower_images_s", "ingest_images_s"))
        print(
            f"\n{r['precision']} / {rows[0]['precision']}: tower {tower:.2f}x, end to end {end_to_end:.2f}x"
        )
    for r in audio:
        print(f"\naudio ({r['precision']}): {r['files']} WAVs of 8 s, {r['audio_files_s']:.3f} files/s")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16, help="pictures per precision")
    ap.add_argument("--batch", type=int, default=4, help="pictures per model call")
    ap.add_argument(
        "--per-folder", type=int, default=0, help="pictures per ingested folder (default: --batch)"
    )
    ap.add_argument("--precisions", default="fp32,int8", help="comma-separated, e.g. fp32,int8 or bf16,fp32")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--audio", type=int, default=0, help="also ingest this many WAVs with the audio tower")
    ap.add_argument("--config", default="imagebind_huge", help="model config (imagebind_tiny: smoke run)")
    ap.add_argument("--jpegs", type=Path, default=None, help="a folder of JPEGs instead of Debian's")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument(
        "--ab-workers", type=int, default=None,
        help="ingest every second folder with this many workers (0: one decoding thread) for an A/B",
    )  # fmt: skip
    args = ap.parse_args()
    args.work = args.work or Path(tempfile.mkdtemp(prefix="ibsearch-ceiling-"))
    os.environ.setdefault("IBSEARCH_CACHE", str(args.work / "cache"))
    import torch

    jpegs = real_jpegs(args.work, args.jpegs, args.images)
    folders = batch_folders(args.work, jpegs, args.per_folder or args.batch)
    card = make_card(args.work / "models", ["vision"], args.config)
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
    load_before = os.getloadavg()
    rows = [
        row
        for p in args.precisions.split(",")
        if p.strip()
        for row in ceiling_row(args, card, folders, p.strip())
    ]
    audio = (
        [audio_row(args, p.strip()) for p in args.precisions.split(",") if p.strip()] if args.audio else []
    )
    load_after = os.getloadavg()
    threads = f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {args.device}"
    print(f"CPU {cpu}, {os.cpu_count()} cores, {threads}; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")  # fmt: skip
    print_report(jpegs, rows, audio)
    if args.json_out:
        args.json_out.write_text(json.dumps({"cpu": cpu, "images": rows, "audio": audio}, indent=2))


if __name__ == "__main__":
    main()
