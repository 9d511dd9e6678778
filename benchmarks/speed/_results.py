"""What every speed script records next to its numbers, and where it writes them."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
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
