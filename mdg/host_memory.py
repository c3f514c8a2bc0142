"""Host memory: keep the C heap from fragmenting as a run goes on.

glibc serves allocations above its mmap threshold with ``mmap`` (returned to the system when
freed) and smaller ones from the heap. The threshold is dynamic: freeing an mmapped block raises
it to that block's size (up to 32 MiB), so after the first multi-megabyte numpy buffers (blocks of
clips, eval chunks) are freed, later buffers of that size land on the heap, where holes between
live objects are never returned. Measured on the default AE job at 4x its clip count (1 epoch,
docs/reliability.md): peak RSS grew by ~90 MB per training unit with the dynamic threshold and
stayed flat at ~830 MB with a fixed 1 MiB threshold.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3   # mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20


def fix_mmap_threshold(num_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fixes glibc's mmap threshold at ``num_bytes`` (which also turns its dynamic adjustment
    off). Returns False where the C library is not glibc (nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, num_bytes))
