"""Keep freed memory in a process that analyses image after image (glibc's ``mallopt``).

One 12 MP analysis allocates and frees arrays of tens of megabytes (planes, filtered copies,
block statistics). glibc serves an allocation above its mmap threshold (128 KB, raised
after each free up to 32 MB) with a fresh ``mmap`` and unmaps it on ``free``; so the next
image's arrays are new pages, each faulted in and zeroed by the kernel, and on a virtual
machine every fault is dear. A worker pool process, which runs one method of one image,
then another method of another, never reaches the steady heap of a long loop: measured on
the 2-core development VM, its system time was 0.24-0.27 s per 12 MP image against 0.06-0.07
s for the same work in one engine process, and 0.10-0.15 s once freed blocks stay in the
heap (docs/platform.md, Benchmark). Raising both thresholds keeps them there for the next
image.

The price: the process keeps the heap of the largest image it analysed until it exits (a
pool process held 0.74 GB after 12 MP JPEGs); the worker recycles a process whose resident
size passes ``FORENSICS_WORKER_MAX_MEMORY_MB`` (Celery's ``worker_max_memory_per_child``).
"""

import ctypes
import sys

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap and return to it when freed.
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap kept, not given back (``mallopt`` takes an int).
TRIM_THRESHOLD = (1 << 31) - 1


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where that is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl (Alpine) has no libc.so.6 and no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
