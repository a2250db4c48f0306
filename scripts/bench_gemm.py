#!/usr/bin/env python
"""fp32 matrix products of the ImageBind-Huge blocks, through every backend a CPU process here can call.

Both our encoder and the reference-style forward spend most of their fp32 time in these products
(``aten::addmm``, i.e. MKL's sgemm in the PyPI torch wheel). This script times the same products,
interleaved, through the alternatives that are callable from one process with torch's tensors:

* ``aten``: ``F.linear`` with bias (what both forwards use);
* ``onednn``: ``torch.ops.mkldnn._linear_pointwise`` (oneDNN's fp32 kernels);
* ``mkl-packed``: MKL with the weight packed once ahead of time (what torch.compile's freezing uses);
* ``openblas``: numpy's ``matmul`` (the OpenBLAS bundled with numpy), bias not included, timed after
  the others because its own thread pool competes with torch's.

Rows are the per-block products at batch 8 (vision: 8 x 257 tokens, audio: 8 x 229). Figures are
median GFLOP/s over ``--iters`` interleaved rounds. Usage: ``python scripts/bench_gemm.py``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

# (tower, product, rows, in features, out features) at batch 8 for imagebind_huge.
SHAPES = [
    ("vision", "qkv", 8 * 257, 1280, 3840),
    ("vision", "proj", 8 * 257, 1280, 1280),
    ("vision", "fc1", 8 * 257, 1280, 5120),
    ("vision", "fc2", 8 * 257, 5120, 1280),
    ("audio", "qkv", 8 * 229, 768, 2304),
    ("audio", "fc1", 8 * 229, 768, 3072),
    ("audio", "fc2", 8 * 229, 3072, 768),
]


def backends(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The torch-side backends; they share torch's OpenMP threads, so they can be interleaved."""
    rows = x.shape[0]
    packed = torch.ops.mkl._mkl_reorder_linear_weight(w, rows)
    return {
        "aten": lambda: F.linear(x, w, b),
        "onednn": lambda: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""),
        "mkl-packed": lambda: torch.ops.mkl._mkl_linear(x, packed, w, b, rows),
    }


def median_seconds(fns: dict[str, Callable[[], object]], iters: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved after one warm-up call each."""
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=9, help="interleaved rounds per shape")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}")
    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n")
    names = ["aten", "onednn", "mkl-packed", "openblas"]
    print("| tower | product | M x K x N | " + " | ".join(f"{n} GFLOP/s" for n in names) + " | best / aten |")
    print("|---|---|---|" + "---|" * (len(names) + 1))
    g = torch.Generator().manual_seed(0)
    inputs = []
    for _, _, rows, k, n in SHAPES:
        x, w = torch.randn(rows, k, generator=g), torch.randn(n, k, generator=g)
        inputs.append((x, w, torch.randn(n, generator=g)))
    rates: list[dict[str, float]] = []
    for (_, _, rows, k, n), (x, w, b) in zip(SHAPES, inputs, strict=True):
        seconds = median_seconds(backends(x, w, b), args.iters)
        rates.append({name: 2 * rows * k * n / s / 1e9 for name, s in seconds.items()})
    # OpenBLAS runs its own thread pool, whose threads keep spinning for a while after each call and
    # would slow whatever torch runs next; so it goes last, on its own.
    for (_, _, rows, k, n), (x, w, _), rate in zip(SHAPES, inputs, rates, strict=True):
        x_np, wt_np = x.numpy(), np.ascontiguousarray(w.numpy().T)
        out = np.empty((rows, n), dtype=np.float32)
        matmul = functools.partial(np.matmul, x_np, wt_np, out=out)
        seconds = median_seconds({"openblas": matmul}, args.iters)
        rate["openblas"] = 2 * rows * k * n / seconds["openblas"] / 1e9
    for (tower, product, rows, k, n), rate in zip(SHAPES, rates, strict=True):
        cells = " | ".join(f"{rate[name]:.0f}" for name in names)
        gain = max(rate.values()) / rate["aten"]
        print(f"| {tower} | {product} | {rows} x {k} x {n} | {cells} | {gain:.2f}x |")


if __name__ == "__main__":
    main()
