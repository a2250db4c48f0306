#!/usr/bin/env python3
"""The measuring half of ``scripts/gpu_check.sh``: exact search at 1M x 1024 on the GPU, the bf16 cosine
of the huge vision tower, and the one table (with the ingest figures of ``bench_ceiling.py``).

* search: ``TorchExactIndex`` (what an exact index is searched with on a GPU) over 1,000,000 random
  unit vectors of 1024; p50 and p95 of single queries, and a batch of 100;
* bf16 cosine: a random-weight ``imagebind_huge`` vision tower (small init, as ``write_random_checkpoint``)
  on 8 random pictures, bf16 (autocast, what ``auto`` picks on a GPU) against fp32 on the same GPU.

Usage:  python scripts/gpu_check.py [--ingest ingest.json] [--tests tests.txt] [--n 1000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoder import build, make_inputs  # noqa: E402  (random towers, shared)

from ibsearch.encoder.model.config import get_config  # noqa: E402
from ibsearch.encoder.runtime import Encoder  # noqa: E402
from ibsearch.index import TorchExactIndex  # noqa: E402


def search_figures(n: int, dim: int = 1024, queries: int = 50) -> dict[str, float]:
    """Milliseconds of single exact queries (p50, p95) and of one batch of 100, on the GPU."""
    g = torch.Generator(device="cuda").manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(n, dim, device="cuda", generator=g), dim=1)
    index = TorchExactIndex.from_arrays(np.arange(n), vectors.cpu().numpy(), device="cuda", copy=False)
    del vectors
    qs = np.random.default_rng(1).standard_normal((queries + 100, dim)).astype(np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    index.search(qs[:1], 10)  # warm-up: kernels, allocator
    single = []
    for q in qs[:queries]:
        start = time.perf_counter()
        index.search(q[None], 10)
        single.append(1e3 * (time.perf_counter() - start))
    start = time.perf_counter()
    index.search(qs[queries:], 10)
    batch = 1e3 * (time.perf_counter() - start)
    single.sort()
    return {
        "p50_ms": statistics.median(single),
        "p95_ms": single[int(0.95 * len(single))],
        "batch100_ms": batch,
    }


def bf16_cosine(images: int = 8) -> float:
    """Lowest cosine between bf16 and fp32 vectors of the huge vision tower on the GPU."""
    config = get_config("imagebind_huge")
    x = make_inputs(config, "vision", images, seed=1)
    exact = Encoder.from_model(build(config, "vision", 0, "small"), device="cuda", precision="fp32").encode(
        "vision", x
    )
    torch.cuda.empty_cache()
    fast = Encoder.from_model(build(config, "vision", 0, "small"), device="cuda", precision="bf16").encode(
        "vision", x
    )
    return float((exact * fast).sum(axis=1).min())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--ingest", type=Path, default=None, help="the JSON of bench_ceiling.py --json-out")
    ap.add_argument("--tests", type=Path, default=None, help="the pytest output (its last line is shown)")
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors searched")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check.py: torch sees no CUDA GPU")
    search = search_figures(args.n)
    cosine = bf16_cosine()
    ingest = json.loads(args.ingest.read_text()) if args.ingest and args.ingest.exists() else {}
    rows = [("GPU", torch.cuda.get_device_name(0)), ("torch", torch.__version__)]
    if args.tests and args.tests.exists():
        lines = args.tests.read_text().strip().splitlines()
        rows.append(("GPU tests (test_devices_here, test_runtime)", lines[-1] if lines else "no output"))
    for r in ingest.get("images", []):
        rows.append((f"images/s, huge vision {r['precision']}, tower only", f"{r['tower_images_s']:.1f}"))
        rows.append((f"images/s, huge vision {r['precision']}, end to end (real JPEGs)",
                     f"{r['ingest_images_s']:.1f} ({r['ratio']:.0%} of the tower)"))  # fmt: skip
    for r in ingest.get("audio", []):
        rows.append(
            (
                f"audio files/s, huge audio {r['precision']}, end to end (8 s WAVs)",
                f"{r['audio_files_s']:.1f}",
            )
        )
    if not ingest:
        rows.append(("ingest", "no figures (bench_ceiling.py failed or timed out: see its log)"))
    rows.append((f"search p50 / p95, exact, {args.n:,} x 1024 (torch on the GPU)",
                 f"{search['p50_ms']:.2f} / {search['p95_ms']:.2f} ms"))  # fmt: skip
    rows.append(("search, batch of 100, same index", f"{search['batch100_ms']:.1f} ms"))
    rows.append(("bf16 vs fp32 cosine, huge vision tower (lowest of 8)", f"{cosine:.5f}"))
    print("| check | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
