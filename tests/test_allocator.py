"""forensics.allocator: a process that retains freed memory reuses it instead of faulting in fresh pages."""

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import numpy as np
from forensics.allocator import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    plane = np.ones((3000, 4000), np.float32)  # a 12 MP luma plane, 48 MB: above glibc's default mmap threshold
    del plane
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_freed_planes_are_reused_instead_of_faulted_in_again() -> None:
    applied, retained = _faults("retain")
    _, default = _faults("default")
    assert applied == "True"
    # by default every 48 MB plane is a fresh mapping faulted in again: 12,000 faults with 4 KB
    # pages, a few hundred where numpy gets transparent huge pages (9,540 in all here)
    assert default > 20 * 100
    # retained, only the first plane's pages are faulted in and the other 19 reuse them (411 here)
    assert retained < default / 5


TRIM_PROBE = """
import os
import numpy as np
from forensics.allocator import retain_freed_memory, trim_freed_memory

def resident():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

retain_freed_memory()
planes = [np.ones((3000, 4000), np.float32) for _ in range(8)]  # 384 MB, kept in the heap once freed
del planes
held = resident()
print(trim_freed_memory(above=2 * held), trim_freed_memory(above=0), held, resident())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_a_process_over_the_trim_size_gives_its_free_memory_back() -> None:
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], check=True, capture_output=True, text=True).stdout.split()
    kept, trimmed, held, after = out[0], out[1], int(out[2]), int(out[3])
    assert (kept, trimmed) == ("False", "True")
    assert held - after > 300 * 1024**2, "the freed planes were given back"
