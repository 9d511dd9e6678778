"""offrl_zoo.heap: glibc's thresholds are set where glibc runs, and the opt-out leaves them alone. What the
setting buys (no page faults in training steps that had them) is measured in benchmarks/speed/README.md,
"Host-side costs"; a unit test cannot reproduce it reliably, since whether glibc's defaults fault depends on
a process's allocation history."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from offrl_zoo.heap import OPT_OUT, keep_freed_memory

SET_IN_A_FRESH_PROCESS = "from offrl_zoo.heap import keep_freed_memory; print(keep_freed_memory())"


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the setting is glibc malloc's"
)
def test_glibc_accepts_both_thresholds():
    env = {**os.environ, OPT_OUT: "0"}
    out = subprocess.run(
        [sys.executable, "-c", SET_IN_A_FRESH_PROCESS], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "True"  # mallopt(3) returned success for both


def test_the_opt_out_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv(OPT_OUT, "1")
    assert keep_freed_memory() is False
