"""Kills and crashes: SIGKILL at random moments of training, evaluation, checkpoint and report writing;
every restart resumes, the final results equal an uninterrupted run's, and no file is half-written.
A full disk while writing a checkpoint keeps the previous one and says why; Ctrl-C names the run to resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from _support import assert_intact, cli, compare, done_markers

from offrl_zoo import io as train_io
from offrl_zoo.bench.sweep import run_status
from offrl_zoo.errors import WriteError
from offrl_zoo.io import load_torch
from offrl_zoo.train import RunRequest, train

TASK = "toy-25_gaussian-near"
TRAIN = dict(
    algorithm="td3bc",
    task=TASK,
    steps=2000,
    log_every=25,
    checkpoint_every=25,
    eval_every=200,
    eval_episodes=50,
    overrides=["hidden=[32,32]"],
)
VOLATILE = {"time", "updates_per_s"}
SURVIVED = {"training kills": 0, "report kills": 0}


def train_args(run_dir: Path) -> list[str]:
    options = [(f"--{k.replace('_', '-')}", str(v)) for k, v in TRAIN.items() if k not in ("algorithm", "overrides")]
    return [
        "train",
        TRAIN["algorithm"],
        *[x for pair in options for x in pair],
        "--run-dir",
        str(run_dir),
        "--no-progress",
        *TRAIN["overrides"],
    ]


def kill_when(proc: subprocess.Popen, started, rng: random.Random, timeout: float = 60) -> bool:
    """SIGKILL ``proc`` a random 0–0.6 s after ``started()`` holds; False if it finished first."""
    deadline = time.time() + timeout
    while not started() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 0.6))
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def stable(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in path.read_text().splitlines()]


def test_random_kills_during_training_resume_to_the_uninterrupted_result(tmp_path):
    reference = train(RunRequest(**TRAIN), run_dir=tmp_path / "reference", progress=False)
    run_dir, rng, start = tmp_path / "killed", random.Random(7), time.time()
    metrics = run_dir / "metrics.jsonl"
    while SURVIVED["training kills"] < 6 and time.time() - start < 45:
        before = metrics.stat().st_size if metrics.exists() else -1
        proc = cli(*train_args(run_dir))
        if not kill_when(proc, lambda size=before: metrics.exists() and metrics.stat().st_size > size, rng):
            break
        assert_intact(run_dir)
        if (run_dir / "done").exists():  # it finished just before the kill landed
            break
        SURVIVED["training kills"] += 1
    proc = cli(*train_args(run_dir))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert SURVIVED["training kills"] >= 3
    assert_intact(run_dir)
    assert not list(run_dir.glob(".*.tmp"))
    for log in ("metrics.jsonl", "eval.jsonl"):
        assert stable(run_dir / log) == stable(reference / log), log
    a, b = (load_torch(d / "checkpoint.pt")["algorithm"]["modules"] for d in (reference, run_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kills_while_writing_a_report_leave_complete_files(tmp_path):
    from offrl_zoo.bench.sweep import plan, record_sweep

    store = tmp_path / "store"
    sweep = plan(["bc"], None, [TASK], 2, "30", ["hidden=[16]"])
    record_sweep(store, sweep)
    for spec in sweep.runs:
        train(
            RunRequest(
                "bc", task=TASK, seed=spec.seed, steps=30, eval_every=30, eval_episodes=10, overrides=["hidden=[16]"]
            ),
            run_dir=spec.run_dir(store),
            progress=False,
        )
    reference = cli("report", str(store), "--out", str(tmp_path / "reference"))
    assert reference.wait(timeout=120) == 0, reference.stdout.read()
    rng, report = random.Random(3), store / "report"
    for _ in range(3):
        proc = cli("report", str(store))
        if kill_when(proc, lambda: report.exists() and any(report.rglob("*.png")), rng):
            SURVIVED["report kills"] += 1
            assert_intact(report)
    proc = cli("report", str(store))
    assert proc.wait(timeout=120) == 0, proc.stdout.read()
    assert_intact(report)
    for name in ("report.json", "runs.csv", "aggregate.csv"):
        assert (report / name).read_text() == (tmp_path / "reference" / name).read_text(), name


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    request = RunRequest(**(TRAIN | {"steps": 50, "eval_every": 50, "eval_episodes": 10}))
    run_dir = train(request, run_dir=tmp_path / "r", progress=False)
    good = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "done").unlink()

    def full_disk_mkstemp(dir, prefix, suffix):  # noqa: A002 - the name tempfile uses
        name = Path(dir) / f"{prefix}full{suffix}"
        name.touch()
        return os.open("/dev/full", os.O_WRONLY), str(name)  # every write: ENOSPC

    monkeypatch.setattr(train_io.tempfile, "mkstemp", full_disk_mkstemp)
    with pytest.raises(
        WriteError,
        match=r"could not write .*checkpoint\.pt: No space left on device; the "
        r"previous version is intact",
    ):
        train_io.save_torch(run_dir / "checkpoint.pt", {"x": torch.zeros(100_000)})
    assert (run_dir / "checkpoint.pt").read_bytes() == good
    assert not list(run_dir.glob(".*.tmp"))
    load_torch(run_dir / "checkpoint.pt")


def test_ctrl_c_names_the_run_to_resume(tmp_path):
    """SIGINT (Ctrl-C) during training: exit code 130 and one line naming the run to resume, no traceback."""
    run_dir = tmp_path / "r"
    proc = cli(*train_args(run_dir))
    deadline = time.time() + 60
    while not (run_dir / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert out.strip().splitlines()[-1] == (
        f"offrl-zoo: interrupted: {run_dir} stopped; re-run the same command to resume it from its last checkpoint"
    )
    assert_intact(run_dir)


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path):
    """SIGKILL a whole ``compare`` (the parent) midway: re-running it redoes no finished run."""
    store = tmp_path / "store"
    proc = compare(store)
    deadline = time.time() + 240
    while len(done_markers(store)) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # the parent-death signal reaches the training child
    finished = done_markers(store)
    assert 1 <= len(finished) < 4
    statuses = [run_status(p) for p in (store / "runs").glob("*/*/*")]
    assert "running" not in statuses  # no orphan still training after the sweep died
    assert_intact(store)

    again = compare(store)
    out, _ = again.communicate(timeout=400)
    assert again.returncode == 0, out
    assert f"{len(finished)} done" in out
    assert len(done_markers(store)) == 4
    for path, stamp in finished.items():
        assert path.stat().st_mtime_ns == stamp, f"{path} was trained again"
    report = json.loads((store / "report" / "report.json").read_text())
    assert report  # the report was rebuilt over all 4 runs (its content is checked in test_report.py)
    assert (store / "report" / "report.md").is_file()


def teardown_module() -> None:  # shown with ``pytest -s``
    print(f"\nkill/resume cycles survived: {SURVIVED}")
