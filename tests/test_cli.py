"""The CLI through the real installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = shutil.which("offrl-zoo") or str(Path(sys.executable).parent / "offrl-zoo")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_console_script_is_installed():
    assert Path(EXE).exists(), "offrl-zoo console script not found next to the interpreter"


def test_help_everywhere():
    for args in ([], ["train"], ["eval"], ["list"], ["config"], ["export"], ["reference"], ["reference", "make"]):
        out = run(*args, "--help")
        assert out.returncode == 0, out.stderr
        assert "usage: offrl-zoo" in out.stdout


def test_list_algorithms_and_tasks():
    algos = run("list").stdout
    for name in ("bc", "td3bc", "iql", "mlbc"):
        assert name in algos
    tasks = run("list", "tasks").stdout
    assert "hopper-medium-v2" in tasks and "toy-25_gaussian-far" in tasks
    assert "corl" in run("list", "presets").stdout


def test_misspelt_names_get_suggestions():
    out = run("train", "iqll", "--task", "toy-25_gaussian-far")
    assert out.returncode == 2 and "Did you mean 'iql'" in out.stderr
    out = run("train", "iql", "--task", "hoper-medium-v2")
    assert out.returncode == 2 and "Did you mean 'hopper-medium-v2'" in out.stderr


def test_unknown_or_mistyped_key_fails_before_training(tmp_path):
    out = run("train", "iql", "--task", "toy-25_gaussian-far", "--out", str(tmp_path), "actr_lr=1e-4")
    assert out.returncode == 2
    assert "unknown key 'actr_lr'" in out.stderr and "Did you mean 'actor_lr'" in out.stderr
    assert "Valid keys:" in out.stderr
    out = run("train", "iql", "--task", "toy-25_gaussian-far", "--out", str(tmp_path), "actor_lr=fast")
    assert out.returncode == 2 and "actor_lr" in out.stderr
    out = run("train", "iql", "--task", "toy-25_gaussian-far", "--out", str(tmp_path), "expectile=1.5")
    assert out.returncode == 2 and "expectile" in out.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written for a config error"


def test_config_shows_sources():
    out = run("config", "iql", "--task", "hopper-medium-v2", "--preset", "corl", "actor_lr=1e-4")
    assert out.returncode == 0, out.stderr
    lines = {line.split(":")[0]: line for line in out.stdout.splitlines()}
    assert "command line" in lines["actor_lr"]
    assert "preset corl" in lines["deterministic_actor"] and "official-code" in lines["deterministic_actor"]


def test_config_file_layer(tmp_path):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("beta: 7.5\n")
    out = run("config", "iql", "--task", "toy-25_gaussian-far", "--config", str(cfg), "beta=8.0")
    beta = next(line for line in out.stdout.splitlines() if line.startswith("beta:"))
    assert "8.0" in beta and "command line" in beta
    out = run("config", "iql", "--task", "toy-25_gaussian-far", "--config", str(cfg))
    beta = next(line for line in out.stdout.splitlines() if line.startswith("beta:"))
    assert "7.5" in beta and str(cfg) in beta


def test_train_then_eval(tmp_path):
    out = run(
        "train",
        "bc",
        "--task",
        "toy-25_gaussian-near",
        "--steps",
        "50",
        "--out",
        str(tmp_path),
        "--no-progress",
        "hidden=[32,32]",
    )
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "bc" / "toy-25_gaussian-near" / "seed0"
    assert (run_dir / "done").is_file()
    assert "score" in out.stdout
    out = run("eval", str(run_dir), "--episodes", "5")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["protocol"]["episodes"] == 5 and "score_mean" in result
    out = run("eval", str(run_dir), "--episodes", "1", "candidates=4")  # BC's act has no choice to make
    assert out.returncode != 0 and "not an acting key of bc (acting keys: none" in out.stderr


def test_eval_acting_overrides_change_only_the_selection_rule():
    import torch

    from offrl_zoo import registry, testing
    from offrl_zoo.cli.main import _acting_overrides
    from offrl_zoo.errors import ConfigError

    algo = testing.make(registry.get("idql"))
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    assert _acting_overrides(algo, ["candidates=3", "selection=resample"]) == {"candidates": 3, "selection": "resample"}
    assert (algo.cfg.candidates, algo.cfg.selection) == (3, "resample")
    assert all(torch.equal(before[k], v) for k, v in algo.state_dict().items())
    assert algo.act(torch.zeros(2, testing.OBS_DIM)).shape == (2, testing.ACTION_DIM)
    with pytest.raises(ConfigError, match="selection='best'"):
        _acting_overrides(algo, ["selection=best"])
    with pytest.raises(ConfigError, match="not an acting key of idql"):
        _acting_overrides(algo, ["score_hidden=64"])


def test_custom_dataset_needs_env(tmp_path):
    out = run("train", "bc", "--dataset", str(tmp_path / "x.hdf5"))
    assert out.returncode == 2 and "--env" in out.stderr


@pytest.mark.parametrize("args", [["train", "bc"], ["train", "bc", "--task", "toy-25_gaussian-far", "--bogus"]])
def test_bad_invocations_exit_nonzero(args):
    out = run(*args)
    assert out.returncode != 0
    assert "error" in out.stderr
