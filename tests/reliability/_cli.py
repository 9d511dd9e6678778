"""The CLI run in-process for the reliability tests, and what a refusal must look like: one line on stderr,
exit code 2, naming what was wrong."""

from __future__ import annotations

import re

import pytest

from offrl_zoo.cli import main

TASK = "toy-25_gaussian-near"
# What train prints on stderr before training (train/run.py ``_announce``): the run, then its data.
ANNOUNCED = re.compile(r"\S+ on \S+, seed \d+ -> .+\n  data: ")
TINY_RUN = ["--steps", "10", "--checkpoint-every", "5", "--eval-every", "10", "--eval-episodes", "2", "--no-progress"]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``offrl-zoo ARGV``."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def refusal(code: int, err: str, *named: str) -> str:
    """The one line of a refusal; fails unless exit code 2, one line, and one of ``named`` in it."""
    lines = err.strip().splitlines()
    if len(lines) > 1 and ANNOUNCED.match("\n".join(lines[:2])):  # a refusal met once the run had started
        lines = [line for line in lines[2:] if not line.startswith("  resuming from ")]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("offrl-zoo: error: "), err
    assert not named or any(name in lines[0] for name in named), (named, err)
    return lines[0]
