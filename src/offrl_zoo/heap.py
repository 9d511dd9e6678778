"""Freed memory kept in the process's heap (glibc malloc), so that a training step does not page-fault.

A step allocates and frees the same tensors every time (activations, gradients, the compiled graph's
buffers: 64 KiB – 8 MiB each). glibc's defaults hand such blocks back to the kernel when they are freed
(blocks above a threshold that adapts up to 32 MiB are mmap-ed, and the top of the heap is trimmed once
128 KiB+ are free there), so the next step maps them again and touches every page afresh: ≈ 1 350 page faults
and ≈ 1.5 ms of kernel time in a 24 ms DTQL step on one thread (benchmarks/speed/README.md). Fixing both
thresholds keeps that memory in the heap: no faults, the same numbers computed; a process then holds its
peak heap until it exits, which a training run does anyway.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt(3) parameters and the values set: blocks up to 32 MiB (glibc's ceiling for this threshold on 64-bit)
# come from the heap, and up to 1 GiB of free memory may stay at its top.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
OPT_OUT = "OFFRL_ZOO_SYSTEM_MALLOC"  # set to 1 to leave glibc's defaults alone


def keep_freed_memory() -> bool:
    """Set the thresholds for this process (module docstring); True when they were set. A no-op off
    Linux/glibc (other allocators have their own policies) and when ``OFFRL_ZOO_SYSTEM_MALLOC=1``."""
    if os.environ.get(OPT_OUT) == "1" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
