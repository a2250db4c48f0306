"""Cluster ingest on a local Ray runtime against a local ingest of the same files, on this machine.

Both ingest the same folder of generated photos (and a few sounds) with a random-weight model into
fresh libraries; the script prints files/s of each, the ratio, and Ray's start-up separately (a real
cluster pays it once per run, not per file). With a GPU, the actors take one each and the figure is
files/s per GPU.

    python scripts/bench_ray.py --files 96 --config imagebind_small
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def make_media(folder: Path, files: int) -> None:
    folder.mkdir(parents=True)
    base = np.asarray(Image.open(DATA / "images" / "photo_640x480.jpg").convert("RGB").resize((320, 240)))
    rng = np.random.default_rng(0)
    for i in range(files):
        noisy = np.clip(base.astype(int) + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"img_{i:04d}.jpg", quality=90)
    for i in range(max(1, files // 16)):
        shutil.copy(DATA / "audio" / "mix_16000_mono_s16_5p3s.wav", folder / f"sound_{i:03d}.wav")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--config", default="imagebind_small")
    args = parser.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    from ibsearch.cluster import Cluster, ingest_on_ray
    from ibsearch.encoder.weights.random_weights import write_random_model
    from ibsearch.engine import Library

    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        root = Path(tmp)
        make_media(root / "media", args.files)
        _, card = write_random_model(args.config, root / "model.pth")
        total = len(list((root / "media").iterdir()))
        started = time.perf_counter()  # both runs include loading the model (the actors load theirs)
        with Library.open(root / "local", model=str(card), device="auto", create=True) as lib:
            local = lib.ingest([str(root / "media")], workers=None)
        local_s = time.perf_counter() - started
        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        gpus = ray.cluster_resources().get("GPU", 0)
        started = time.perf_counter()
        with Library.open(root / "ray", model=str(card), device="auto", create=True) as lib:
            remote = ingest_on_ray(lib, [str(root / "media")], cluster=Cluster())
        ray_s = time.perf_counter() - started
        ray.shutdown()
    with open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores, {gpus:g} GPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"{total} files ({args.files} photos 320x240 + sounds), model {args.config} with random weights")
    for name, seconds, summary in (
        ("local ingest", local_s, local),
        ("ray ingest (local Ray)", ray_s, remote),
    ):
        print(f"{name:<24}{seconds:7.1f} s  {total / seconds:6.2f} files/s  (encoded {summary.encoded})")
    print(f"  of which Ray start-up of this machine's runtime: {ray_start:.1f} s (before the run, not in it)")
    print(f"ratio ray / local files/s: {local_s / ray_s:.2f}x")
    if gpus:
        print(f"files/s per GPU: {total / ray_s / gpus:.2f}")


if __name__ == "__main__":
    main()
