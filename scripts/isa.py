"""``--isa avx2`` for the benchmarks: run a script as on a CPU without AVX-512, on an AVX-512 machine.

Torch's own kernels, MKL, oneDNN and FBGEMM each choose their code path from the CPU when they load;
each has an environment variable that caps it. They must be set before torch is imported, so
:func:`limit_isa` starts the script again with them set. What it shows is the AVX2 code paths on this
CPU's cores, caches and ports, not an AVX2 CPU: say so when recording its figures.
"""

from __future__ import annotations

import argparse
import os
import sys

#: The caps ``--isa avx2`` sets: torch, MKL, oneDNN, FBGEMM.
AVX2_ONLY = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
}


def add_isa_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--isa", choices=("native", "avx2"), default="native",
        help="avx2: cap torch, MKL, oneDNN and FBGEMM at AVX2 (the script starts itself again)",
    )  # fmt: skip


def limit_isa() -> None:
    """Call before importing torch: with ``--isa avx2`` on the command line, start this script again
    with the caps of :data:`AVX2_ONLY` set (once; a second start finds them set and goes on)."""
    pre = argparse.ArgumentParser(add_help=False)
    add_isa_option(pre)
    if pre.parse_known_args()[0].isa != "avx2" or all(os.environ.get(k) == v for k, v in AVX2_ONLY.items()):
        return
    os.environ.update(AVX2_ONLY)
    os.execv(sys.executable, [sys.executable, *sys.argv])


def print_environment(env: dict, isa: str, capability: str, load_before: float) -> None:
    """The benchmark's environment section: ``env`` (``bench_encoder.environment()``), the kernels'
    cap (``--isa``) and torch's CPU capability under it, and the load average before and now."""
    print("## Environment")
    for key, value in env.items():
        print(f"- {key}: {value}")
    print(f"- kernels: {isa} (torch's CPU capability: {capability})")
    print(f"- load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
