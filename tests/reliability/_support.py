"""Helpers of the reliability tests: the real CLI in a subprocess, and a check that no file is half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from offrl_zoo.io import load_torch

TASKS = ["toy-25_gaussian-far", "toy-25_gaussian-hard"]
SWEEP = [
    "bc",
    "--tasks",
    *TASKS,
    "--seeds",
    "2",
    "--budget",
    "60",
    "--jobs",
    "1",
    "--no-estimate",
    "--eval-episodes",
    "100",
    "hidden=[32,32]",
]


def cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "offrl_zoo.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def compare(store: Path, *extra: str) -> subprocess.Popen:
    return cli("compare", *SWEEP, "--out", str(store), *extra)


def done_markers(store: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (store / "runs").glob("*/*/*/done")}


def assert_intact(folder: Path) -> None:
    """Every visible file parses completely; a killed write may only have left a hidden temp file."""
    for path in folder.rglob("*"):
        if path.is_dir() or path.name.startswith("."):
            continue
        if path.suffix == ".pt":
            load_torch(path)
        elif path.suffix == ".json" or path.name in ("done", "failed"):
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".yaml":
            assert yaml.safe_load(path.read_text()) is not None
        elif path.suffix == ".png":
            assert path.read_bytes()[-8:] == b"IEND\xaeB`\x82", path  # the PNG end chunk is there
