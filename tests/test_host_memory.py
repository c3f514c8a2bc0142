"""glibc malloc configured (mdg.host_memory.configure_malloc): freed multi-megabyte buffers go back to the
system instead of staying as holes in the heap, a step's freed heap top is not returned and faulted
in again, and threads share at most ARENA_MAX arenas. Each case runs in a fresh interpreter."""

import platform
import subprocess
import sys
import textwrap

import pytest

from mdg import host_memory

# platform.libc_ver, not configure_malloc: the check must not change this pytest process's malloc.
GLIBC_ONLY = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the C library is not glibc")

PROGRAM = textwrap.dedent("""
    import sys
    import numpy as np
    import psutil
    from mdg import host_memory

    if sys.argv[1] == "fixed":
        assert host_memory.configure_malloc()
    rss = lambda: psutil.Process().memory_info().rss
    big = np.ones(16 << 20, np.uint8)   # freeing it raises glibc's dynamic threshold to 16 MiB
    del big
    base = rss()
    live, freed = [], []
    for _ in range(50):   # 4 MiB buffers interleaved with small long-lived ones, as in a run
        freed.append(np.ones(4 << 20, np.uint8))
        live.append(np.ones(200_000, np.uint8))
    del freed
    print((rss() - base) / 2**20)
""")


def run(program: str, mode: str) -> float:
    """The number ``program`` prints, run in a fresh interpreter with argument ``mode``."""
    return float(subprocess.run([sys.executable, "-c", program, mode], capture_output=True, text=True,
                                check=True).stdout)


def retained_mib(mode):
    return run(PROGRAM, mode)


@GLIBC_ONLY
def test_freed_buffers_are_returned_with_the_fixed_threshold_and_kept_without():
    assert retained_mib("fixed") < 40            # ~10 MiB of live small buffers
    assert retained_mib("dynamic") > 100         # the 200 MiB of freed buffers stay resident



FAULTS_PROGRAM = textwrap.dedent("""
    import resource
    import sys
    import numpy as np
    from mdg import host_memory

    if sys.argv[1] == "fixed":
        assert host_memory.configure_malloc()
    elif sys.argv[1] == "mmap_only":   # the trim threshold left at glibc's 128 KiB
        assert host_memory.configure_malloc(trim_bytes=128 << 10)
    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(800_000, np.uint8)
    before = faults()
    for _ in range(300):   # a step's sub-threshold buffers, allocated and freed at the heap top
        np.ones(800_000, np.uint8)
    print((faults() - before) / 300)
""")


def page_faults_per_buffer(mode):
    return run(FAULTS_PROGRAM, mode)


@GLIBC_ONLY
def test_heap_top_is_not_returned_and_faulted_in_again_every_step():
    # 800 kB = ~195 pages: with the 128 KiB trim threshold each buffer is trimmed and faulted anew.
    assert page_faults_per_buffer("mmap_only") > 150
    assert page_faults_per_buffer("fixed") < 5
    assert page_faults_per_buffer("dynamic") < 5


ARENAS_PROGRAM = textwrap.dedent("""
    import ctypes
    import sys
    import tempfile
    import threading
    import numpy as np
    from mdg import host_memory

    if sys.argv[1] == "fixed":
        assert host_memory.configure_malloc()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    together = threading.Barrier(12)
    kept = []

    def allocate():   # a heap allocation from each of 12 threads alive at once
        kept.append(np.ones(50_000, np.uint8))
        together.wait()

    threads = [threading.Thread(target=allocate) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        stream = libc.fopen(report.name.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        print(open(report.name).read().count("<heap nr="))
""")


@GLIBC_ONLY
def test_threads_share_at_most_arena_max_arenas():
    assert run(ARENAS_PROGRAM, "fixed") <= host_memory.ARENA_MAX
    assert run(ARENAS_PROGRAM, "dynamic") > host_memory.ARENA_MAX   # glibc's default: up to 8 per core
