"""offrl_zoo.heap: freed memory stays in the process's heap, so re-allocating a step's tensors does not fault."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from offrl_zoo.heap import OPT_OUT, keep_freed_memory

# Four 4 MiB tensors allocated and freed together, as a step's activations are: glibc's defaults trim the freed
# top of the heap and map it again on the next call (≈ 4 000 faults over these 20 calls, measured).
ALLOCATE_AND_FREE = """
import resource, sys, torch
from offrl_zoo.heap import keep_freed_memory
kept = keep_freed_memory()
def step():
    tensors = [torch.ones(1 << 20) for _ in range(4)]
    return sum(float(t[0]) for t in tensors)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the setting is glibc malloc's"
)


def _faults(env: dict[str, str]) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", ALLOCATE_AND_FREE], capture_output=True, text=True, check=True, env=env, timeout=120
    )
    kept, faults = out.stdout.split()
    return kept == "True", int(faults)


@glibc
def test_a_kept_heap_reallocates_a_steps_tensors_without_page_faults():
    import os

    kept, faults = _faults({**os.environ, OPT_OUT: "0"})
    assert kept
    assert faults < 64  # a few pages of Python's own; each 4 MiB tensor mapped afresh would be 1 024


def test_the_opt_out_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "1")
    assert keep_freed_memory() is False
