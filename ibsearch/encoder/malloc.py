"""Keep freed memory in the process for reuse, so that a CPU forward does not page-fault all the time.

Every transformer block allocates and frees activations of several to tens of MB. glibc's malloc
serves blocks that large with fresh ``mmap`` regions (always above 32 MB, its largest automatic
threshold) and gives memory back to the kernel when the top of the heap is free; the next block's
first write to each new 4 KB page is then a page fault in which the kernel zeroes the page. On the
huge vision tower that is ~565,000 faults and 1.7 s of kernel time per batch of 8 images (about
8 % of the forward; see BENCHMARKS.md). Raising the mmap and trim thresholds makes malloc reuse
freed memory instead. The outputs do not change; the cost is that the process keeps (up to
:data:`RETAIN_BYTES` of) memory it has freed rather than returning it to the system.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

ENV_RETAIN = "IBSEARCH_RETAIN_FREED_MEMORY"  # "0" leaves malloc as it is
RETAIN_BYTES = 1 << 30  # blocks below this come from the heap; this much freed memory is kept
_FALLBACK_MMAP_BYTES = 32 << 20  # the highest mmap threshold older glibc versions accept
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3


def has_glibc_malloc() -> bool:
    """True where the process's C library is glibc on Linux, the only malloc this module tunes."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@functools.lru_cache(maxsize=1)
def retain_freed_memory() -> bool:
    """Tune glibc's malloc to reuse freed memory (once per process); True if it was applied.

    Does nothing and returns False where the C library is not glibc (macOS, Windows, musl) or when
    the environment variable ``IBSEARCH_RETAIN_FREED_MEMORY`` is ``0``.
    """
    if os.environ.get(ENV_RETAIN, "").strip() == "0":
        log.debug("malloc left as it is (%s=0)", ENV_RETAIN)
        return False
    if not has_glibc_malloc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not mallopt(_M_MMAP_THRESHOLD, RETAIN_BYTES) and not mallopt(_M_MMAP_THRESHOLD, _FALLBACK_MMAP_BYTES):
        return False
    if not mallopt(_M_TRIM_THRESHOLD, RETAIN_BYTES):
        return False
    log.debug("malloc keeps up to %d MB of freed memory for reuse", RETAIN_BYTES >> 20)
    return True


__all__ = ["ENV_RETAIN", "RETAIN_BYTES", "has_glibc_malloc", "retain_freed_memory"]
