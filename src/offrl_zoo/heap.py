"""Freed memory kept in the process's heap (glibc malloc), so that a training step does not page-fault; and
``set_up_training_process``, what every process that trains sets first (this and torch's thread count).

A step allocates and frees the same tensors every time (activations, gradients, the compiled graph's
buffers: 64 KiB – 8 MiB each). glibc hands blocks above its mmap threshold back to the kernel when they are
freed, and trims the top of the heap once more than its trim threshold is free there; both thresholds
start at 128 KiB and grow only when the process frees a larger mmap-ed block. Until that happens, if it
does, every step maps its blocks again and touches each page afresh: 421 page faults per DTQL training step
in the side-by-side harness, 1 023 per DQL and 1 619 per IDQL step in a benchmark process
(benchmarks/speed/README.md, "Host-side costs"), while a long training run that has freed a large block
already runs without faults. Fixing both thresholds makes every process the latter from its first step:
no page fault in any training step measured with it (every algorithm's last stage, the DTQL harness), the
same numbers computed; a process then holds its peak heap until it exits, which a training run does anyway.
Not everything is covered: in a microtest a lone 1–24 MiB block from ``posix_memalign`` (torch's CPU
allocator) was mapped afresh at every allocation with or without the setting; the cause was not found.
"""

from __future__ import annotations

import ctypes
import os
import platform

import torch

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


def set_up_training_process(threads: int) -> None:
    """Torch's CPU thread count, and freed memory kept in the heap (``keep_freed_memory``): set once, at the
    start of every process that trains (``train``, ``compare``, ``data``, the speed benchmarks)."""
    torch.set_num_threads(threads)
    keep_freed_memory()
