"""What every speed script records next to its numbers, and where it writes them."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results" / "speed"


def git_sha() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent).stdout

    sha = git("rev-parse", "--short", "HEAD").strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return sha + ("-dirty" if dirty.strip() else "")


def add_common_args(p: argparse.ArgumentParser, algorithms: bool = True, threads: bool = True) -> None:
    """The flags every speed script shares: which algorithms, the task's shapes (hopper by default), torch
    threads, and the tag that ends the result files' names."""
    if algorithms:
        p.add_argument("--algorithms", nargs="*", default=None, help="default: every registered algorithm")
    p.add_argument("--obs-dim", type=int, default=11)  # hopper
    p.add_argument("--action-dim", type=int, default=3)
    if threads:
        p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="", help="suffix of the result file names")


def add_ab_args(p: argparse.ArgumentParser, warmup_help: str) -> None:
    """The flags of an A/B script: blocks, calls per block, untimed warm-up calls per side, and the hidden
    ``--one ALGORITHM`` with which the script runs itself per algorithm (``run_child``)."""
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--block-steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=15, help=warmup_help)
    p.add_argument("--one", help=argparse.SUPPRESS)


def ab_blocks(
    calls: dict[str, Callable[[], object]], select: Callable[[str], None], blocks: int, per_block: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Each side's call timed in ``blocks`` blocks of ``per_block`` calls, sides alternating in ABBA order so
    that both see the same load, ``select(side)`` run before each block. Returns the medians over blocks of
    seconds per call and of minor page faults per call, by side."""
    sides = list(calls)
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    faults: dict[str, list[float]] = {side: [] for side in sides}
    for b in range(blocks):
        for side in sides if b % 2 == 0 else sides[::-1]:
            select(side)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            for _ in range(per_block):
                calls[side]()
            seconds[side].append((time.perf_counter() - start) / per_block)
            faults[side].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / per_block)
    return (
        {side: statistics.median(t) for side, t in seconds.items()},
        {side: statistics.median(f) for side, f in faults.items()},
    )


def machine_meta(device: str, threads: int, **extra: object) -> dict:
    """Date, machine (the chip: CPU model and vector instructions, or GPU name), torch version, git sha, thread
    count and the command that ran."""
    import torch

    from offrl_zoo.train.cost import processor

    return {
        "date": dt.date.today().isoformat(),
        "machine": processor(device),
        "cpu_count": os.cpu_count(),
        "device": device,
        "threads": threads,
        "torch": torch.__version__,
        "git_sha": git_sha(),
        **extra,
        "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }


def run_child(script: str, args: list[str], threads: int, what: str) -> dict:
    """``python SCRIPT ARGS`` in a fresh process (its own peak memory, its own compile caches) with ``threads``
    OpenMP threads; the last line it prints, read as JSON."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_results(kind: str, tag: str, meta: dict, results: list[dict], markdown: str) -> None:
    """``benchmarks/results/speed/<date>-<kind>-<device type>[-tag].{json,md}``."""
    import torch

    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{meta['date']}-{kind}-{torch.device(meta['device']).type}{'-' + tag if tag else ''}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown)
    print(f"wrote {RESULTS / stem}.json/.md")
