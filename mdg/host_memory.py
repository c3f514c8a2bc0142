"""Host memory: keep the C heap from growing as a run goes on, without slowing the steps.

Three glibc malloc settings, fixed at startup (``mallopt``), each measured on this 2-core CPU:

1. mmap threshold 1 MiB. glibc serves allocations above it with ``mmap`` (returned when freed).
   Its default threshold is dynamic: freeing an mmapped block raises it to that size (up to
   32 MiB), so after the first multi-megabyte numpy buffers (blocks of clips, eval chunks) were
   freed, later ones landed on the heap, where holes between live objects stay resident: peak
   RSS of the default AE job at 4x its clips grew by ~90 MB per unit (docs/reliability.md).
2. trim threshold 64 MiB. Fixing the mmap threshold stops glibc from raising the trim threshold
   with it (to twice the mmap threshold), and at its 128 KiB default every step's few megabytes
   of freed buffers at the top of the heap went back to the system and were faulted in again on
   the next step: the full-size AE, fed as mdg.main feeds it, trained at 130-145 steps/s instead
   of 177-214. 64 MiB is the value the dynamic scheme reaches itself; speed is back (199-215).
3. at most 4 arenas. The trim threshold holds per malloc arena, and glibc makes up to 8 arenas
   per core as threads allocate (XLA's workers, read-ahead, checkpoint writers), so free tops
   piled up as new threads came: RSS before each of the five units of a 1-epoch 4x run went
   763 -> 1071 -> 1292 -> 1342 -> 1322 MB. With 4 arenas it levels off at about 1015 MB (678,
   904, 1031, 1015, 1015) at full speed (207-215 steps/s); with 2 it stays near 850-910 MB but
   the threads contend (176-183 steps/s).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1   # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENA_MAX = 4
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_THRESHOLD_BYTES = 64 << 20


def configure_malloc(mmap_bytes: int = MMAP_THRESHOLD_BYTES, trim_bytes: int = TRIM_THRESHOLD_BYTES,
                     arena_max: int = ARENA_MAX) -> bool:
    """Fixes glibc's mmap threshold at ``mmap_bytes``, its trim threshold at ``trim_bytes`` (which
    turns their dynamic adjustment off) and its arena count at ``arena_max``. Returns False where
    the C library is not glibc (nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(parameter, value) for parameter, value in (
        (M_MMAP_THRESHOLD, mmap_bytes), (M_TRIM_THRESHOLD, trim_bytes), (M_ARENA_MAX, arena_max)))
