"""Keep freed CPU memory in the process instead of handing it back to the OS after every step.

glibc's ``malloc`` serves large blocks (above ``M_MMAP_THRESHOLD``, 128 KiB at start) with fresh
``mmap`` pages and trims the heap top above ``M_TRIM_THRESHOLD``: a training step that allocates and
frees the same multi-megabyte activations every step then page-faults on every one of their pages,
every step. Measured on the 2-core development machine (fused 11-run MNIST-1D MLP step, see
benchmarks/fused_sweep.py): ~1,300 minor page faults per step and ~30% of the step's time, gone after
:func:`keep_freed_memory`. The settings only change *when* memory returns to the OS, never results
(blocks above 32 MiB, e.g. whole datasets, are still mapped and unmapped).

The trainers call it once the data is loaded: set before, it would keep the loading transients
(e.g. CIFAR-10's 30 MB pickled batches) on the heap and raise the peak by ~175 MB.

Linux/glibc only; a no-op elsewhere and when ``RETHINKGEN_MALLOPT=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit: blocks below it come from the heap
TRIM_THRESHOLD = 64 * 1024 * 1024  # free heap top kept before trimming

_done = False


def keep_freed_memory() -> bool:
    """Tune glibc malloc once per process (see the module docstring); True if the settings are active."""
    global _done
    if _done:
        return True
    if os.environ.get("RETHINKGEN_MALLOPT", "1") == "0" or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
