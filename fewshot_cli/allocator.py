"""glibc's allocator set to keep freed memory for the next allocation.

By default glibc hands every allocation above 32 MB to the kernel afresh (``mmap``) and gives it
back when freed, so each training step's large activations and each episode's image batch fault
their pages in again, zeroed by the kernel: on a CPU that is a large share of a step
(``benchmarks/allocator.py``). With both thresholds at 1 GiB, freed blocks stay in the heap and
are reused. The process keeps at most that much freed memory; results are unchanged.

Applied by ``fewshot`` at start-up on Linux with glibc (elsewhere nothing changes); worker
processes and ``torchrun``'s inherit it through glibc's environment variables.
``FEWSHOT_MALLOC=system`` keeps glibc's defaults.

Example::

    reuse_freed_memory()  # True where it took effect
"""

from __future__ import annotations

import ctypes
import os
import sys

THRESHOLD = 1 << 30  # bytes
# mallopt's parameter numbers (malloc.h) and the environment variables glibc reads at start-up.
SETTINGS = {-3: "MALLOC_MMAP_THRESHOLD_", -1: "MALLOC_TRIM_THRESHOLD_"}


def reuse_freed_memory() -> bool:
    """Set this process's glibc thresholds, and its children's through the environment.

    Returns:
        Whether glibc took the settings (False off Linux or glibc, or with ``FEWSHOT_MALLOC=system``).
    """
    if not sys.platform.startswith("linux") or os.environ.get("FEWSHOT_MALLOC") == "system":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library
        return False
    taken = all(mallopt(parameter, THRESHOLD) == 1 for parameter in SETTINGS)
    if taken:
        for name in SETTINGS.values():
            os.environ.setdefault(name, str(THRESHOLD))
    return taken
