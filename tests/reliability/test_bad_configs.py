"""Bad configs and commands: a clear one-line error (with a suggestion where one exists) before any work."""

from __future__ import annotations

import re

import pytest

from offrl_zoo.cli import main

TASK = "toy-25_gaussian-near"
TRAIN_CASES = {
    "unknown key": (["expectille=0.8"], r"unknown key 'expectille'\. Did you mean 'expectile'\?"),
    "wrong type": (["actor_lr=fast"], r"bad value for 'actor_lr': Value 'fast' of type 'str' could not be converted"),
    "wrong element type": (["hidden=[256,wide]"], r"bad value for 'hidden\[1\]'"),
    "negative learning rate": (["actor_lr=-3e-4"], r"actor_lr=-0\.0003: expected a positive number"),
    "expectile outside (0, 1)": (["expectile=1.2"], r"expectile=1\.2: expected a value in the open interval \(0, 1\)"),
    "discount outside (0, 1)": (["discount=0"], r"discount=0\.0: expected a value in the open interval"),
    "batch larger than the dataset": (
        ["batch_size=20000"],
        r"batch_size=20000 is larger than the dataset of toy-25_gaussian-near \(10000",
    ),
    "not key=value": (["expectile"], r"unrecognized arguments: expectile"),
}


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse refusals
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", list(TRAIN_CASES))
def test_bad_config_values_are_refused_before_training(tmp_path, capsys, name):
    overrides, message = TRAIN_CASES[name]
    code, err = run_cli(["train", "iql", "--task", TASK, "--steps", "5", "--out", str(tmp_path), *overrides], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 or name == "not key=value", err
    assert re.search(message, err), err
    assert not list(tmp_path.rglob("config.yaml")) and not list(tmp_path.rglob("checkpoint.pt"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "iqll", "--task", TASK], r"unknown algorithm 'iqll'\. Did you mean 'iql'"),
        (
            ["train", "iql", "--task", "hopper-medum-v2"],
            r"unknown task 'hopper-medum-v2'\. Did you mean 'hopper-medium",
        ),
        (["compare", "iql", "--suite", "gym-medum"], r"unknown suite 'gym-medum'\. Did you mean 'gym-medium'"),
        (["train", "iql", "--task", TASK, "--steps", "0"], r"argument --steps: 0: expected a positive integer"),
        (["train", "iql", "--task", TASK, "--seed", "-1"], r"argument --seed: -1: expected a seed"),
        (["compare", "iql", "--suite", "toy", "--seeds", "0"], r"argument --seeds: 0: expected a positive integer"),
        (["compare", "iql", "--suite", "toy", "--budget", "fast"], r"--budget"),
        (["train", "iql", "--task", TASK, "--preset", "quik"], r"preset 'quik' unknown for iql"),
    ],
)
def test_unknown_names_and_bad_numbers(tmp_path, capsys, args, message):
    code, err = run_cli([*args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("checkpoint.pt"))


def test_a_results_store_holding_another_experiment_is_refused(tmp_path, capsys):
    store = tmp_path / "store"
    base = ["compare", "bc", "--suite", "toy", "--seeds", "1", "--no-estimate", "--out", str(store)]
    from offrl_zoo.bench.sweep import plan, record_sweep

    record_sweep(store, plan(["bc"], "toy", None, 1, "50"))  # an existing store with a 50-step budget
    code, err = run_cli([*base, "--budget", "60"], capsys)
    assert code == 2 and "budget" in err and "use another --out" in err, err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("not results")
    code, err = run_cli([*base[:-1], str(foreign)], capsys)
    assert code == 2 and "not a results store" in err, err
    assert (foreign / "thesis.tex").read_text() == "not results" and len(list(foreign.iterdir())) == 1


def test_a_run_directory_holding_another_run_is_refused(tmp_path, capsys):
    args = ["train", "bc", "--task", TASK, "--steps", "5", "--run-dir", str(tmp_path / "r"), "hidden=[16]"]
    assert run_cli(args, capsys)[0] == 0
    (tmp_path / "r" / "done").unlink()
    code, err = run_cli([*args, "lr=0.5"], capsys)
    assert code == 2 and "already holds a different run (algorithm_config.lr: 0.0003 != 0.5;" in err, err
