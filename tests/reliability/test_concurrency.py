"""Concurrency: two ``compare`` processes on one results store never train a run twice at once and do not
corrupt each other's files (a lock per run, held by the training process)."""

from __future__ import annotations

import json
import re

import pytest
from _support import TASKS, assert_intact, cli

from offrl_zoo.errors import RunLockedError
from offrl_zoo.train import RunRequest, train
from offrl_zoo.train.run_dir import run_lock


def test_a_run_in_progress_is_not_started_twice(tmp_path):
    request = RunRequest("bc", task=TASKS[0], steps=5, eval_episodes=10, overrides=["hidden=[16]"])
    with run_lock(tmp_path / "r"), pytest.raises(RunLockedError, match=r"being trained by pid \d+"):
        train(request, run_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "config.yaml").exists()  # refused before touching the run
    train(request, run_dir=tmp_path / "r", progress=False)  # free again: trains
    assert (tmp_path / "r" / "done").is_file()


def test_two_sweeps_on_one_store_share_the_work(tmp_path):
    store = tmp_path / "store"
    sweep = [
        "compare",
        "bc",
        "--tasks",
        TASKS[0],
        "--seeds",
        "2",
        "--budget",
        "4000",
        "--jobs",
        "1",
        "--no-estimate",
        "--eval-episodes",
        "100",
        "--out",
        str(store),
        "hidden=[32,32]",
    ]
    first, second = cli(*sweep), cli(*sweep)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    runs = sorted((store / "runs").glob("*/*/seed*"))
    assert len(runs) == 2
    for run in runs:
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == sorted(set(steps)) and steps[-1] == 4000, (run, steps)  # one training, never two
        assert json.loads((run / "done").read_text())["final_eval"]["step"] == 4000
    assert_intact(store)  # which sweep trained which run depends on timing; the next test forces the wait
    for out in outputs:  # each sweep ends with every run finished and reported
        assert re.search(rf"{TASKS[0]} .*\[2/2\]", out), out


def test_a_sweep_waits_for_a_run_another_process_trains(tmp_path):
    store = tmp_path / "store"
    sweep = [
        "compare",
        "bc",
        "--tasks",
        TASKS[0],
        "--budget",
        "60",
        "--jobs",
        "1",
        "--no-estimate",
        "--eval-episodes",
        "100",
        "--out",
        str(store),
        "hidden=[32,32]",
    ]
    assert cli(*sweep, "--seeds", "1").communicate(timeout=300)[0]  # the store exists, seed 0 is done
    held = store / "runs" / "bc" / TASKS[0] / "seed1"
    with run_lock(held):  # as another sweep's training process would hold it
        waiting = cli(*sweep, "--seeds", "2")
        lines = iter(waiting.stdout.readline, "")
        assert any("seed1: being trained by another process; this sweep waits for it" in line for line in lines)
        assert not (held / "metrics.jsonl").exists()  # it waits, it does not train the run
    out = waiting.communicate(timeout=300)[0]  # released: the sweep trains it and finishes
    assert waiting.returncode == 0 and re.search(rf"{TASKS[0]} .*\[2/2\]", out), out
    assert json.loads((held / "done").read_text())["final_eval"]["step"] == 60
