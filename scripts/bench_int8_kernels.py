#!/usr/bin/env python
"""How much faster int8 matrix products are than fp32 ones on this CPU: the ceiling of ``--precision int8``.

The huge towers spend most of their time in four linear layers per block; int8 can make a tower at most
as much faster as it makes those products. Per layer shape of the huge vision tower (``--batch``
pictures of 257 tokens each) and of the huge audio tower, on the same random inputs and weights, best of
``--iters``, the calls interleaved:

* **fp32**: ``F.linear``, what ``--precision fp32`` runs (MKL's sgemm);
* **int8, fbgemm**: torch's dynamically quantized linear layer prepacked by the ``fbgemm`` engine (the
  input quantized on the fly, to 7 bits), what ``--precision int8`` runs on CPUs without VNNI or AMX,
  and for text everywhere;
* **int8, onednn**: the same layer prepacked by the ``onednn`` engine, what it runs for the other
  towers on CPUs with VNNI or AMX (``ibsearch.encoder.runtime.int8_engine``);
* **int8 GEMM alone**: ``torch._int_mm`` on int8 operands: the bare integer product, without the
  quantization of the input and the rescaling of the output that a layer adds around it.

``--isa avx2`` runs it all as on a CPU without AVX-512: the script starts itself again with torch's own
kernels (``ATEN_CPU_CAPABILITY``), MKL (``MKL_ENABLE_INSTRUCTIONS``), oneDNN (``ONEDNN_MAX_CPU_ISA``) and
FBGEMM (``FBGEMM_ENABLE_INSTRUCTIONS``) limited to AVX2. On an AVX-512 machine this shows the AVX2 code
paths, not an AVX2 CPU's caches and ports: say so when recording it.

Usage:  python scripts/bench_int8_kernels.py [--isa native|avx2] [--batch 4] [--iters 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from isa import add_isa_option, limit_isa, print_environment  # noqa: E402  (shared; no torch)

limit_isa()  # with --isa avx2: starts this script again, capped at AVX2, before torch loads

import argparse  # noqa: E402  (below the re-exec: nothing may load torch before it)
import os  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_encoder import environment, say, table  # noqa: E402  (shared)
from torch import nn  # noqa: E402

from ibsearch.encoder.model.config import get_config  # noqa: E402
from ibsearch.encoder.model.towers import tower_specs  # noqa: E402


def shapes(batch: int) -> list[tuple[str, int, int, int]]:
    """``(layer, rows, in, out)`` of the huge vision and audio towers' linear layers for ``batch`` items."""
    specs = tower_specs(get_config("imagebind_huge"))
    out = []
    for modality in ("vision", "audio"):
        spec = specs[modality]
        rows = batch * (spec.num_patches + 1)  # the patches and the class token
        d, hidden = spec.width, spec.mlp_ratio * spec.width
        for layer, k, n in (("qkv", d, 3 * d), ("proj", d, d), ("fc1", d, hidden), ("fc2", hidden, d)):
            out.append((f"{modality} {layer}", rows, k, n))
    return out


def quantized(weight: torch.Tensor, engine: str) -> nn.Module:
    """A dynamically quantized linear layer over ``weight``, prepacked by ``engine``."""
    torch.backends.quantized.engine = engine
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.zero_()
    with warnings.catch_warnings():  # torch marks torch.ao.quantization as deprecated for torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(nn.Sequential(layer), {nn.Linear}, dtype=torch.qint8)


def best_of(fns: dict[str, Callable[[], object]], iters: int) -> dict[str, float]:
    """Seconds of each call, best of ``iters``, the calls interleaved (one warm-up each)."""
    for fn in fns.values():
        fn()
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return {name: min(times) for name, times in runs.items()}


def shape_row(layer: str, rows: int, k: int, n: int, iters: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, k, generator=gen)
    w = torch.randn(n, k, generator=gen) * 0.02
    bias = torch.zeros(n)
    engines = [e for e in ("fbgemm", "onednn") if e in torch.backends.quantized.supported_engines]
    layers = {e: quantized(w, e) for e in engines}
    xi = torch.randint(-127, 128, (rows, k), dtype=torch.int8, generator=gen)
    wi = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=gen).t()
    with torch.inference_mode():
        fns: dict[str, Callable[[], object]] = {"fp32": lambda: F.linear(x, w, bias)}
        fns.update({e: (lambda q=q: q(x)) for e, q in layers.items()})
        fns["int_mm"] = lambda: torch._int_mm(xi, wi)
        seconds = best_of(fns, iters)
    fp32 = seconds["fp32"]
    row = {"layer": layer, "shape": f"{rows} x {k} -> {n}", "fp32_ms": fp32 * 1e3}
    row["gmacs"] = rows * k * n / fp32 / 1e9
    for name in ("fbgemm", "onednn", "int_mm"):
        row[name] = f"{fp32 / seconds[name]:.2f}x" if name in seconds else "-"
    ratios = ", ".join(f"{name} {row[name]}" for name in ("fbgemm", "onednn", "int_mm"))
    say(f"{layer}: fp32 {fp32 * 1e3:.1f} ms, {ratios}")
    return row


COLUMNS = [("layer", "layer", "{}"), ("rows x in -> out", "shape", "{}"), ("fp32 ms", "fp32_ms", "{:.1f}"),
           ("fp32 GMAC/s", "gmacs", "{:.0f}"), ("int8 fbgemm", "fbgemm", "{}"),
           ("int8 onednn", "onednn", "{}"), ("int8 GEMM alone", "int_mm", "{}")]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_isa_option(ap)
    ap.add_argument("--batch", type=int, default=4, help="items per call (vision: 257 rows each)")
    ap.add_argument("--iters", type=int, default=5, help="timed calls per contestant (best is kept)")
    args = ap.parse_args()
    env, load_before = environment(), os.getloadavg()[0]
    rows = [shape_row(*shape, args.iters) for shape in shapes(args.batch)]
    print_environment(env, args.isa, torch.backends.cpu.get_cpu_capability(), load_before)
    print(f"\n## int8 against fp32 per linear layer (speed of each over fp32's, best of {args.iters})\n")
    print(table(rows, COLUMNS))


if __name__ == "__main__":
    main()
