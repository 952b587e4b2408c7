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

The price: the process keeps the heap of the largest image it analysed (a pool process held
0.74 GB after 12 MP JPEGs). A heap kept after a large image does not simply serve the next
one: the next large image's arrays rarely fit the freed holes, and the process grows (seven
50 MP images in a row took a pool process from 1.07 to 1.77 GB). So past
:data:`TRIM_ABOVE_BYTES` the worker gives free memory back after each task
(:func:`trim_freed_memory`), and recycles a process whose resident size passes
``FORENSICS_WORKER_MAX_MEMORY_MB`` (Celery's ``worker_max_memory_per_child``).
"""

import ctypes
import os
import sys

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap and return to it when freed.
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap kept, not given back (``mallopt`` takes an int).
TRIM_THRESHOLD = (1 << 31) - 1
#: Resident size above which free memory is given back after a task: above what 12 and 24 MP
#: images leave (0.74 and 0.79 GB), so they keep their heap; with it, nine 50 MP images in a
#: row left the pool processes at most 1.42 GB.
TRIM_ABOVE_BYTES = 1 << 30


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


def trim_freed_memory(above: int = TRIM_ABOVE_BYTES) -> bool:
    """Give the heap's free memory back to the system (glibc's ``malloc_trim``) when this
    process's resident size is over ``above`` bytes; True when it did."""
    if not sys.platform.startswith("linux"):
        return False
    with open("/proc/self/statm") as fh:
        resident = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    if resident <= above:
        return False
    try:
        malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim(0)
    return True
