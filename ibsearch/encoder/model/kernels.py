"""Where cutting a text short keeps the bits of the reference's full 77-token run: checked CPUs only.

Under the causal mask no position after a text's EOT reaches the EOT, so dropping them is the same
math. It is not the same bits: matrix products and attention over fewer rows take other kernels,
which MKL, oneDNN and ATen choose by row count and by CPU (AVX2, AVX-512, AMX). Cutting to a
multiple of 16 tokens (77 above 64) gave the full run's bits on an AMD EPYC with AVX2 and no AVX-512
(torch 2.13), and did not on an Intel Xeon with AVX-512 and AMX (the huge text tower 1.6e-5 from the
full run). No cut is known to keep the bits whatever the kernels, so the cut is taken only on the
CPUs and kernels it was checked on, and all 77 positions are computed elsewhere.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Mapping

import torch

from ..inputs import TEXT_CONTEXT

#: Environment variables that make MKL or oneDNN run other kernels than the CPU's own.
KERNEL_OVERRIDES = (
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
)
#: (torch major.minor, ATen CPU capability) pairs the cut was checked with, on CPUs without AVX-512.
CHECKED_CUT = frozenset({("2.13", "AVX2")})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where that file does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def text_cut_checked(
    flags: Collection[str], capability: str, torch_version: str, environ: Mapping[str, str]
) -> bool:
    """Whether the multiple-of-16 text cut was checked to give the full run's bits on such a CPU.

    ``flags``: the CPU's /proc/cpuinfo flags; ``capability``: ATen's CPU capability
    (``torch.backends.cpu.get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY`` lowers); ``environ``:
    the process environment, where :data:`KERNEL_OVERRIDES` switch MKL's and oneDNN's kernels.
    """
    release = ".".join(torch_version.split("+")[0].split(".")[:2])
    return (
        "avx2" in flags
        and "avx512f" not in flags
        and (release, capability) in CHECKED_CUT
        and not any(environ.get(name) for name in KERNEL_OVERRIDES)
    )


def exact_text_length(n: int, device: torch.device) -> int:
    """Tokens to keep so that a text whose last EOT is at n - 1 gives the bits of the full 77-token run.

    On a CPU: the next multiple of 16 (77 above 64) where :func:`text_cut_checked`, else all 77. On
    other devices the multiple of 16 (GPU kernels were not checked against the full run).
    """
    if device.type == "cpu" and not text_cut_checked(
        cpu_flags(), torch.backends.cpu.get_cpu_capability(), torch.__version__, os.environ
    ):
        return TEXT_CONTEXT
    return TEXT_CONTEXT if n > 64 else max(16, -(-n // 16) * 16)


__all__ = ["CHECKED_CUT", "KERNEL_OVERRIDES", "cpu_flags", "exact_text_length", "text_cut_checked"]
