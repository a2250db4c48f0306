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

``--query`` times instead what one short text query costs in the huge text tower's 96 products (24
blocks: qkv, proj, fc1, fc2; 1024 wide) at 1 and 16 rows (16: the cut a short text gets when the bits of
the full run are kept), per backend, against the time to read the fp32 weights once (the floor of any
fp32 product, memory-bound at so few rows): ``aten`` (MKL), ``onednn``, ``openblas`` (last, its own
threads), ``int8`` (fbgemm's dynamically quantized linear, what ``--precision int8`` runs) and
``fp16-weights`` (fbgemm's linear with fp16 weights and fp32 arithmetic).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


# The products of one block of the huge text tower, (in features, out features); 24 blocks.
TEXT_BLOCK = [(1024, 3072), (1024, 1024), (1024, 4096), (4096, 1024)]
TEXT_DEPTH = 24


def quantized(layers: nn.ModuleList, dtype: torch.dtype) -> nn.ModuleList:
    with warnings.catch_warnings():  # torch.ao.quantization is marked deprecated for torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(layers, {nn.Linear}, dtype=dtype)


def query_rows(
    rows: int, layers: nn.ModuleList, int8: nn.ModuleList, fp16: nn.ModuleList, iters: int
) -> dict[str, float]:
    """Milliseconds for all of ``layers``' products at ``rows`` rows, per backend, and to read them."""
    g = torch.Generator().manual_seed(rows)
    weights = [(layer.weight.detach(), layer.bias.detach()) for layer in layers]
    xs = {k: torch.randn(rows, k, generator=g) for k in {k for k, _ in TEXT_BLOCK}}
    inputs = [xs[w.shape[1]] for w, _ in weights]
    onednn = torch.ops.mkldnn._linear_pointwise
    fns: dict[str, Callable[[], object]] = {
        "read": lambda: [w.sum() for w, _ in weights],
        "aten": lambda: [F.linear(x, w, b) for x, (w, b) in zip(inputs, weights, strict=True)],
        "onednn": lambda: [
            onednn(x, w, b, "none", [], "") for x, (w, b) in zip(inputs, weights, strict=True)
        ],
        "int8": lambda: [layer(x) for x, layer in zip(inputs, int8, strict=True)],
        "fp16": lambda: [layer(x) for x, layer in zip(inputs, fp16, strict=True)],
    }
    with torch.inference_mode():
        ms = {name: s * 1e3 for name, s in median_seconds(fns, iters).items()}
    pairs = [
        (x.numpy(), np.ascontiguousarray(w.numpy().T)) for x, (w, _) in zip(inputs, weights, strict=True)
    ]
    ms["openblas"] = median_seconds({"o": lambda: [a @ b for a, b in pairs]}, iters)["o"] * 1e3
    return ms


def query_table(iters: int) -> None:
    """One text query's products through every backend, at 1 and 16 rows."""
    g = torch.Generator().manual_seed(0)
    layers = nn.ModuleList(nn.Linear(k, n) for _ in range(TEXT_DEPTH) for k, n in TEXT_BLOCK)
    for layer in layers:
        nn.init.normal_(layer.weight, std=0.02, generator=g)
    fp32_bytes = sum(layer.weight.numel() * 4 for layer in layers)
    print(f"{len(layers)} products, {fp32_bytes / 1e9:.2f} GB of fp32 weights\n")
    names = ["aten (MKL)", "onednn", "openblas", "int8 (fbgemm)", "fp16-weights (fbgemm)"]
    print("| rows | read fp32 weights once | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    int8, fp16 = quantized(layers, torch.qint8), quantized(layers, torch.float16)  # once, for both
    for rows in (1, 16):
        ms = query_rows(rows, layers, int8, fp16, iters)
        read = f"{ms['read']:.0f} ms ({fp32_bytes / ms['read'] / 1e6:.1f} GB/s)"
        cells = [f"{ms[name]:.0f} ms" for name in ("aten", "onednn", "openblas", "int8", "fp16")]
        print(f"| {rows} | {read} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=9, help="interleaved rounds per shape")
    parser.add_argument("--query", action="store_true", help="one text query's products instead")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}")
    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n")
    if args.query:
        query_table(args.iters)
        print(f"\nload average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        return
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
