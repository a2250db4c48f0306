#!/usr/bin/env python3
"""Real-folder benchmark (issue 20): what ibsearch makes of the media and documents a dozen Debian
packages ship, plus a few phone-like files, ingested with the small random-weight model.

1. ``apt-get download`` each package of :data:`PACKAGES` (``apt-get update`` first if one cannot be
   found) and ``dpkg -x`` it under ``--work`` (default /tmp; never the repository): nothing is
   installed, and each package keeps its own licence (the files are not committed anywhere).
2. Build the folder: at most ``--per-package`` regular files of each package's ``usr/share`` (spread
   evenly over its sorted list, so every kind of file it ships is represented), and ``phone/``: a
   HEIC photo (when pillow-heif is installed), a Latin-1 note and an ``.ogv`` video with a picture only.
3. Ingest it in one process into a fresh library with ``imagebind_tiny`` random weights, one
   extension at a time (the files named as paths, so each extension's time is its own; the first
   one also pays for loading the tiny model), then the whole folder once more (nothing left to
   encode: the walk's skipped counts).
4. Print per extension: files, indexed, failed, skipped, files/s; then the totals with the share of
   the files that hold pictures, sound, video or text that was indexed.

``--code CHECKOUT`` runs the ingest with another checkout's ``ibsearch`` (e.g. main before issue 20:
``git -C /work/main archive <commit> | tar -x -C /tmp/x``) for the "no slower per file" comparison.

Usage:  .venv/bin/python scripts/bench_real_folder.py [--work /tmp] [--per-package 150] [--code DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Debian packages with real media and documents nobody on the project made (see ENVIRONMENT.md).
PACKAGES = [
    "desktop-base",  # wallpapers and themes: SVG, PNG
    "sway-backgrounds",  # large PNG/JPEG wallpapers
    "gnome-backgrounds",  # JPEG/WebP/JPEG XL wallpapers, XML slideshows
    "sound-theme-freedesktop",  # .oga event sounds
    "oxygen-sounds",  # .ogg event sounds
    "frozen-bubble-data",  # game music and sounds (.ogg, .wav), PNG sprites
    "pingus-data",  # game sprites (PNG, JPEG), music, level files
    "gnome-user-docs",  # Mallard .page help, SVG and PNG figures
    "git-doc",  # long .txt manuals, HTML
    "debian-refcard",  # PDF and .pdf.gz
    "jpeg-xl-doc",  # JPEG XL documentation
    "libjxl-testdata",  # JPEG XL, PAM, PNG, PPM test images
    "yelp-xsl",  # XSLT, JS, CSS, SVG icons
]

#: Extensions of files that hold pictures, sound, video or text (what the target share counts).
MEDIA_EXTENSIONS = {
    *".jpg .jpeg .jpe .png .gif .bmp .webp .tif .tiff .ppm .pgm .pam .pnm .pbm .avif .heic .heif".split(),
    *".jxl .svg".split(),
    *".wav .flac .mp3 .ogg .oga .opus .m4a .aac .aif .aiff .mp4 .m4v .mov .mkv .webm .avi .mpg .ogv".split(),
    *".txt .md .html .htm .xhtml .page .pdf .pdf.gz .txt.gz .docbook .docx .odt .epub .rtf".split(),
}


def extension(path: str) -> str:
    """A file's extension, lower case, with the inner one of a ``.gz`` (``.pdf.gz``); ``(none)``."""
    stem, ext = os.path.splitext(path.lower())
    if ext == ".gz" and os.path.splitext(stem)[1]:
        ext = os.path.splitext(stem)[1] + ext
    return ext or "(none)"


def download(packages: list[str], debs: Path) -> list[Path]:
    """The ``.deb`` of each package in ``debs``, downloaded when not there yet."""
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        got = subprocess.run(["apt-get", "download", *missing], cwd=debs, capture_output=True, text=True)
        if got.returncode != 0:  # an old or missing package list: update it once and try again
            subprocess.run(["apt-get", "update"], check=True, capture_output=True)
            subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    return [next(debs.glob(f"{p}_*.deb")) for p in packages]


def spread(items: list[Path], n: int) -> list[Path]:
    """At most ``n`` of ``items``, evenly spaced over the list."""
    if len(items) <= n:
        return items
    return [items[i * len(items) // n] for i in range(n)]


def build_folder(debs: list[Path], work: Path, per_package: int) -> Path:
    """Unpack each package and copy at most ``per_package`` of its files into a fresh folder."""
    folder = work / "folder"
    shutil.rmtree(folder, ignore_errors=True)
    for deb in debs:
        unpacked = work / "unpacked" / deb.name.split("_")[0]
        if not unpacked.exists():
            unpacked.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
        share = unpacked / "usr" / "share"
        files = sorted(p for p in share.rglob("*") if p.is_file() and not p.is_symlink())
        for src in spread(files, per_package):
            dst = folder / unpacked.name / src.relative_to(share)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    make_phone_files(folder / "phone")
    return folder


def make_phone_files(folder: Path) -> None:
    """What a phone adds: a HEIC photo (with pillow-heif), a Latin-1 note, a picture-only .ogv."""
    import av
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:480, 0:640]
    photo = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(photo).save(folder / "IMG_0001.jpg", quality=90)
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        Image.fromarray(photo).save(folder / "IMG_0002.heic")
    except ImportError:
        print("pillow-heif is not installed: no HEIC photo in the folder", file=sys.stderr)
    note = "Liste de courses : café, crème fraîche, pâté, bœuf haché; à déposer chez Zoé.\n"
    (folder / "note-latin1.txt").write_bytes(note.replace("œ", "oe").encode("latin-1"))
    with av.open(str(folder / "clip.ogv"), "w", format="ogg") as out:  # VP8 in Ogg: PyAV has no Theora
        stream = out.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(30):
            frame = np.full((120, 160, 3), (i * 8) % 256, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


def ingest_worker(folder: str, library: str, card: str) -> dict:
    """Run in the checkout under test: the ingest, one extension at a time, then the whole folder."""
    from ibsearch.engine import Library

    groups: dict[str, list[str]] = {}
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            groups.setdefault(extension(path), []).append(path)
    per_ext = {}
    with Library.open(library, model=card, device="cpu", create=True) as lib:
        for ext, paths in sorted(groups.items()):
            start = time.perf_counter()
            summary = lib.ingest(paths)
            per_ext[ext] = {"files": len(paths), "seconds": time.perf_counter() - start,
                            "failed": len(summary.failed) + summary.known_bad}  # fmt: skip
        start = time.perf_counter()
        whole = lib.ingest([folder]).to_dict()
    whole["seconds"] = time.perf_counter() - start
    whole.pop("failed", None)
    return {"per_extension": per_ext, "folder_run": whole}


def indexed_paths(library: Path) -> set[str]:
    """The files the library holds, read from its SQLite file (so any checkout's library reads)."""
    with sqlite3.connect(f"file:{library / 'ibsearch.db'}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT path FROM files")}


def report(folder: Path, library: Path, result: dict) -> dict:
    """Per extension and in total: files, indexed, failed, skipped, files/s."""
    indexed = Counter(extension(p) for p in indexed_paths(library))
    rows = {}
    for ext, got in sorted(result["per_extension"].items(), key=lambda kv: -kv[1]["files"]):
        files, failed = got["files"], got["failed"]
        skipped = files - indexed[ext] - failed
        rows[ext] = {"files": files, "indexed": indexed[ext], "failed": failed, "skipped": skipped,
                     "files_per_s": files / got["seconds"]}  # fmt: skip
    total = {key: sum(r[key] for r in rows.values()) for key in ("files", "indexed", "failed", "skipped")}
    seconds = sum(got["seconds"] for got in result["per_extension"].values())
    total["files_per_s"] = total["files"] / seconds
    media = [r for ext, r in rows.items() if ext in MEDIA_EXTENSIONS]
    media_files = sum(r["files"] for r in media)
    total["media_files"], total["media_indexed"] = media_files, sum(r["indexed"] for r in media)
    total["media_share_indexed"] = total["media_indexed"] / max(media_files, 1)
    return {"per_extension": rows, "total": total, "seconds": seconds, "folder_run": result["folder_run"]}


def print_table(out: dict) -> None:
    print(f"{'extension':<12} {'files':>6} {'indexed':>8} {'failed':>7} {'skipped':>8} {'files/s':>8}")
    for ext, r in [*out["per_extension"].items(), ("TOTAL", out["total"])]:
        print(f"{ext:<12} {r['files']:>6} {r['indexed']:>8} {r['failed']:>7} {r['skipped']:>8} "
              f"{r['files_per_s']:>8.1f}")  # fmt: skip
    t = out["total"]
    print(f"pictures, sound, video and text: {t['media_indexed']} of {t['media_files']} indexed "
          f"({100 * t['media_share_indexed']:.1f} %); ingest {out['seconds']:.1f} s")  # fmt: skip
    run = out["folder_run"]
    by_ext = run.get("skipped_by_extension", "(not counted by extension in this checkout)")
    print(f"whole-folder re-run: skipped {run['skipped']} {by_ext}; {run['seconds']:.1f} s")


def main() -> None:
    layout = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=layout)
    parser.add_argument("--work", default="/tmp", help="Scratch folder (outside the repository).")
    parser.add_argument("--per-package", type=int, default=150, help="Files taken from each package.")
    parser.add_argument("--code", default=str(REPO), help="Checkout whose ibsearch runs the ingest.")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)  # FOLDER LIBRARY CARD, in --code
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(ingest_worker(*args.worker)))
        return
    work = Path(args.work).resolve() / "ibsearch-real-folder"
    if work.is_relative_to(REPO):
        parser.error("--work must be outside the repository")
    folder = build_folder(download(PACKAGES, work / "debs"), work, args.per_package)
    from ibsearch.encoder.weights.random_weights import write_random_model

    _, card = write_random_model("imagebind_tiny", work / "model" / "tiny.pth", seed=0)
    library = work / "library"
    shutil.rmtree(library, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(Path(args.code).resolve())}
    cmd = [sys.executable, __file__, "--worker", str(folder), str(library), str(card)]
    done = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True)
    out = report(folder, library, json.loads(done.stdout.splitlines()[-1]))
    out["code"] = str(Path(args.code).resolve())
    print(json.dumps(out, indent=1)) if args.json else print_table(out)


if __name__ == "__main__":
    main()
