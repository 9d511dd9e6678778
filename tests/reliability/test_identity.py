"""A run folder holds one experiment: a request that differs from the run in it, finished or not, is refused in
one line naming what differs, and the folder is left as it was; the same request reuses a finished run's result.
A dataset is identified by its SHA-256, not its path (issue 20, item 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from _cli import TASK, refusal, run_main

TINY = ["--no-progress", "hidden=[16]"]
BC = ["train", "bc", "--task", TASK, "--checkpoint-every", "5", "--eval-episodes", "2", *TINY]
FILE_RUN = ["--env", "Hopper-v5", "--steps", "5", "--eval-episodes", "1", *TINY, "batch_size=32"]  # 198 rows


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def finished(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Runs ``argv`` to completion; its result line(s)."""
    code, out, err = run_main(argv, capsys)
    assert code == 0, err
    return out


def refused_unchanged(argv: list[str], folder: Path, capsys: pytest.CaptureFixture[str], *named: str) -> str:
    """``argv`` is refused in one line naming all of ``named``, and ``folder`` keeps every byte."""
    before = snapshot(folder)
    code, _, err = run_main(argv, capsys)
    line = refusal(code, err)
    assert all(name in line for name in named), (named, line)
    assert snapshot(folder) == before
    return line


def test_a_finished_run_is_refused_for_other_steps_and_reused_for_the_same_request(tmp_path, capsys):
    out = tmp_path / "out"
    first = finished([*BC, "--steps", "10", "--out", str(out)], capsys)
    run_dir = out / "bc" / TASK / "seed0"
    line = refused_unchanged(
        [*BC, "--steps", "20", "--out", str(out)], run_dir, capsys, str(run_dir), "request.steps: 10 != 20"
    )
    assert f"a finished run of bc on {TASK}" in line and "another --out/--run-dir" in line
    before = snapshot(run_dir)
    assert finished([*BC, "--steps", "10", "--out", str(out)], capsys) == first  # printed, not trained again
    assert snapshot(run_dir) == before


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["train", "td3bc", *BC[2:]], "request.algorithm: 'bc' != 'td3bc'"),
        ([*BC[:3], "toy-25_gaussian-far", *BC[4:]], f"task: '{TASK}' != 'toy-25_gaussian-far'"),
        ([*BC, "lr=0.5"], "algorithm_config.lr: 0.0003 != 0.5"),
        ([*BC, "--eval-episodes", "3"], "request.eval_episodes: 2 != 3"),
    ],
)
def test_a_run_dir_holding_a_finished_run_refuses_another_request(tmp_path, capsys, change, named):
    run_dir = tmp_path / "run"
    finished([*BC, "--steps", "10", "--run-dir", str(run_dir)], capsys)
    refused_unchanged([*change, "--steps", "10", "--run-dir", str(run_dir)], run_dir, capsys, named)


def test_a_refused_unfinished_run_is_not_marked_failed(tmp_path, capsys):
    run_dir = tmp_path / "run"
    finished([*BC, "--steps", "10", "--run-dir", str(run_dir)], capsys)
    (run_dir / "done").unlink()
    line = refused_unchanged([*BC, "--steps", "20", "--run-dir", str(run_dir)], run_dir, capsys, "request.steps")
    assert "an unfinished run of bc" in line
    assert not (run_dir / "failed").exists()


def write_d4rl(path: Path, seed: int, n: int = 200) -> Path:
    """A small D4RL-layout file with Hopper-v5's widths."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        fh["observations"] = rng.normal(size=(n, 11)).astype(np.float32)
        fh["actions"] = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        fh["rewards"] = rng.normal(size=n).astype(np.float32)
        fh["terminals"] = np.zeros(n, bool)
        fh["timeouts"] = (np.arange(n) % 100 == 99).astype(bool)
    return path


def test_two_dataset_files_of_one_name_never_share_a_run_folder(tmp_path, capsys):
    a, b = write_d4rl(tmp_path / "a" / "data.hdf5", 0), write_d4rl(tmp_path / "b" / "data.hdf5", 1)
    out = tmp_path / "out"
    finished(["train", "bc", "--dataset", str(a), *FILE_RUN, "--out", str(out)], capsys)
    finished(["train", "bc", "--dataset", str(b), *FILE_RUN, "--out", str(out)], capsys)
    folders = sorted((out / "bc").iterdir())
    assert [f.name[: len("custom_data-")] for f in folders] == ["custom_data-"] * 2
    digests = {yaml.safe_load((f / "seed0" / "config.yaml").read_text())["dataset_sha256"] for f in folders}
    assert {f.name.removeprefix("custom_data-") for f in folders} == {d[:8] for d in digests} and len(digests) == 2


def test_a_dataset_is_its_content_not_its_path(tmp_path, capsys):
    a, b = write_d4rl(tmp_path / "a" / "data.hdf5", 0), write_d4rl(tmp_path / "b" / "data.hdf5", 1)
    run_dir = tmp_path / "run"
    first = finished(["train", "bc", "--dataset", str(a), *FILE_RUN, "--run-dir", str(run_dir)], capsys)
    refused_unchanged(
        ["train", "bc", "--dataset", str(b), *FILE_RUN, "--run-dir", str(run_dir)], run_dir, capsys, "dataset_sha256"
    )
    moved = tmp_path / "elsewhere" / "data.hdf5"
    moved.parent.mkdir()
    shutil.copy(a, moved)  # the same data under another path: the same run
    assert finished(["train", "bc", "--dataset", str(moved), *FILE_RUN, "--run-dir", str(run_dir)], capsys) == first


def test_a_missing_dataset_file_is_refused_before_any_folder_is_made(tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_main(
        ["train", "bc", "--dataset", str(tmp_path / "no.hdf5"), *FILE_RUN, "--out", str(out)], capsys
    )
    refusal(code, err, f"{tmp_path / 'no.hdf5'}: no such file")
    assert not out.exists()


def test_vectorized_seeds_are_checked_like_lone_runs(tmp_path, capsys):
    out = tmp_path / "out"
    seeds = ["--seeds", "2", "--vectorize-seeds", "--out", str(out)]
    first = finished([*BC, "--steps", "10", *seeds], capsys)
    runs = out / "bc" / TASK
    refused_unchanged([*BC, "--steps", "20", *seeds], runs, capsys, "request.steps: 10 != 20", "a finished run")
    assert finished([*BC, "--steps", "10", *seeds], capsys) == first
    # a finished seed among new ones: refused before the new one is trained or even given a folder
    refused_unchanged([*BC, "--steps", "20", "--seeds", "3", "--vectorize-seeds", "--out", str(out)], runs, capsys)
    assert sorted(p.name for p in runs.iterdir()) == ["seed0", "seed1"]


def test_a_store_with_finished_runs_refuses_other_evaluation_settings(tmp_path, capsys):
    """compare reuses a store's finished runs without asking train, so the store itself records how its
    runs are evaluated and refuses a sweep that asks for something else."""
    store = tmp_path / "store"
    sweep = ["compare", "bc", "--tasks", TASK, "--seeds", "1", "--budget", "5", "--no-estimate", "--jobs", "1"]
    finished([*sweep, "--eval-episodes", "2", "--out", str(store), "hidden=[16]"], capsys)
    line = refused_unchanged([*sweep, "--eval-episodes", "3", "--out", str(store), "hidden=[16]"], store, capsys)
    assert "run_settings" in line and "'eval_episodes': 2" in line and "use another --out" in line, line
    finished([*sweep, "--eval-episodes", "2", "--out", str(store), "hidden=[16]"], capsys)  # the same: reused
