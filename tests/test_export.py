"""Exported policies (`offrl-zoo export`): a TorchScript or ONNX file computes what `Algorithm.act` does,
without offrl-zoo, and `offrl-zoo eval --policy` scores it as `eval RUN` scores the run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch

from offrl_zoo import __version__, registry
from offrl_zoo.algorithm import Algorithm
from offrl_zoo.cli.main import main
from offrl_zoo.envs import get_task
from offrl_zoo.errors import ConfigError
from offrl_zoo.export import FORMATS, ONNX_NEEDS, ExportedPolicy, export_policy, onnx_session, sidecar_path
from offrl_zoo.spec import DataSpec
from offrl_zoo.train.evaluator import Evaluator

ALGORITHMS = registry.builtins()
# Tiny networks, few candidates and denoising steps: each export takes about a second.
TINY: dict[str, dict[str, Any]] = {
    "dtql": dict(score_hidden=16, score_hidden_layers=2, critic_hidden=16, actor_hidden=[16, 16], candidates=16),
    "dtql-kl": dict(score_hidden=16, score_hidden_layers=2, critic_hidden=16, actor_hidden=[16, 16], candidates=16),
    "dql": dict(hidden=16, critic_hidden=16, candidates=8, diffusion_steps=3),
    "idql": dict(score_hidden=16, score_blocks=1, critic_hidden=[16, 16], candidates=8, diffusion_steps=3),
    "srpo": dict(score_hidden=16, score_blocks=1, critic_hidden=[16, 16], policy_hidden=16),
    "iql": dict(hidden=[16, 16]),
    "td3bc": dict(hidden=[16, 16]),
    "bc": dict(hidden=[16, 16]),
}
# Selection rules that draw random numbers even when deterministic (candidate sampling, denoising).
RANDOM_RULES = {"dtql", "dtql-kl", "dql", "idql"}
# Normalisation and an asymmetric action box, so that a policy missing either differs from act.
SPEC = DataSpec(
    5,
    3,
    (-1.0, -0.5, -1.0),
    (1.0, 0.5, 0.8),
    obs_loc=(0.5, -1.0, 2.0, 0.0, 3.0),
    obs_scale=(2.0, 0.5, 1.0, 3.0, 0.25),
)
TOY = "toy-25_gaussian-far"
ONNX_ATOL = 1e-5  # ONNX Runtime vs torch kernels on rules without random draws


def make_algo(name: str, spec: DataSpec = SPEC, **overrides: Any) -> Algorithm:
    torch.manual_seed(0)
    cls = registry.get(name)
    return cls(spec, cls.Config(**{**TINY.get(name, {}), **overrides}))


def observations(rows: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    loc, scale = torch.tensor(SPEC.obs_loc), torch.tensor(SPEC.obs_scale)
    return loc + scale * torch.randn(rows, SPEC.obs_dim, generator=g)


Exported = tuple[Algorithm, Path, dict[str, Any]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Exported]:
    """``exported(name, fmt, deterministic=True)``: the algorithm, its policy file and sidecar, made once."""
    folder = tmp_path_factory.mktemp("policies")
    algos: dict[str, Algorithm] = {}
    files: dict[tuple[str, str, bool], Exported] = {}

    def get(name: str, fmt: str, deterministic: bool = True) -> Exported:
        if (name, fmt, deterministic) not in files:
            algo = algos.setdefault(name, make_algo(name))
            path = folder / f"{name}-{'det' if deterministic else 'sto'}{FORMATS[fmt]}"
            files[name, fmt, deterministic] = (algo, path, export_policy(algo, fmt, path, deterministic))
        return files[name, fmt, deterministic]

    return get


# -- TorchScript: exact, in a process without offrl-zoo -------------------------------------------------
PLAIN_TORCH = """
import sys
import torch

torch.set_num_threads(1)
paths, inputs = sys.argv[1].split(","), torch.load(sys.argv[2])
out = {}
for path in paths:
    policy = torch.jit.load(path)
    for rows, obs in inputs.items():
        torch.manual_seed(rows)  # the seed the test gives act
        out[f"{path}|{rows}"] = policy(obs)
loaded = [m for m in sys.modules if m == "offrl_zoo" or m.startswith("offrl_zoo.")]
assert not loaded, loaded
torch.save(out, sys.argv[3])
"""
BATCHES = {1: observations(1), 7: observations(7)}  # the export traces a batch of 2


@pytest.fixture(scope="module")
def plain_torch_actions(exported: Callable[..., Exported], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Actions of every algorithm's TorchScript policy, computed by a Python that imports torch alone."""
    folder = tmp_path_factory.mktemp("plain")
    paths = [str(exported(name, "torchscript")[1]) for name in ALGORITHMS]
    torch.save({str(k): v for k, v in BATCHES.items()}, folder / "obs.pt")
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_TORCH, ",".join(paths), str(folder / "obs.pt"), str(folder / "actions.pt")],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return torch.load(folder / "actions.pt")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_torchscript_policy_is_act_without_offrl_zoo(name, exported, plain_torch_actions):
    """Same actions as act(deterministic=True), seeded alike, at batch sizes other than the traced one:
    the graph draws its random numbers (candidates, denoising noise) from torch's generator in act's order."""
    algo, path, _ = exported(name, "torchscript")
    for rows, obs in BATCHES.items():
        torch.manual_seed(rows)
        expected = algo.act(obs, deterministic=True)
        got = plain_torch_actions[f"{path}|{rows}"]
        assert got.shape == (rows, SPEC.action_dim)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_export_uses_the_eager_act_of_the_fast_path(tmp_path):
    algo = make_algo("td3bc", fast=True)
    export_policy(algo, "torchscript", tmp_path / "p.pt")
    assert algo._compiled_act is None, "export compiled act"
    torch.testing.assert_close(
        ExportedPolicy(tmp_path / "p.pt").act(observations(4)),
        algo._act((observations(4) - algo.obs_loc) / algo.obs_scale, True).clamp(algo.action_low, algo.action_high),
        rtol=0,
        atol=1e-6,
    )


# -- ONNX ---------------------------------------------------------------------------------------------
def onnx_actions(path: Path, obs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    session = onnx_session(path, seed)
    return torch.from_numpy(session.run(["action"], {"observation": obs.numpy()})[0])


@pytest.mark.parametrize("name", [n for n in ALGORITHMS if n not in RANDOM_RULES])
def test_onnx_policy_matches_act(name, exported):
    algo, path, sidecar = exported(name, "onnx")
    assert not sidecar["draws_random_numbers"]
    for obs in BATCHES.values():
        torch.testing.assert_close(onnx_actions(path, obs), algo.act(obs, deterministic=True), rtol=0, atol=ONNX_ATOL)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic, on values rounded to 1e-4 so that float rounding at the
    clip bounds (1.0 against 0.99999994) does not split a tie."""
    a, b = np.sort(np.round(a, 4)), np.sort(np.round(b, 4))
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max())


@pytest.mark.parametrize(("name", "deterministic"), [*((n, True) for n in sorted(RANDOM_RULES)), ("iql", False)])
def test_onnx_random_rule_samples_acts_distribution(name, deterministic, exported):
    """ONNX Runtime cannot draw torch's numbers: the exported rule must sample act's distribution. At one
    observation repeated 2 000 times, per action dimension, the KS statistic of ONNX against torch stays
    below the two-sample critical value at α = 1e-6 (2.69·√(2/n) ≈ 0.085)."""
    algo, path, sidecar = exported(name, "onnx", deterministic)
    assert sidecar["draws_random_numbers"]
    for obs in BATCHES.values():
        got = onnx_actions(path, obs)
        assert got.shape == (len(obs), SPEC.action_dim)
        assert (got >= algo.action_low).all() and (got <= algo.action_high).all()
    n = 2000
    obs = observations(1, seed=5).expand(n, -1)
    torch.manual_seed(0)
    expected = algo.act(obs, deterministic=deterministic).numpy()
    got = onnx_actions(path, obs).numpy()
    critical = 2.69 * np.sqrt(2 / n)
    for d in range(SPEC.action_dim):
        assert ks_statistic(got[:, d], expected[:, d]) < critical, f"action dimension {d}"


def test_onnx_draws_repeat_with_the_seed(exported):
    _, path, _ = exported("dql", "onnx")
    obs = observations(7)
    first, again, other = onnx_actions(path, obs, 3), onnx_actions(path, obs, 3), onnx_actions(path, obs, 4)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_onnx_needs_its_extra(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install 'offrl-zoo\\[onnx\\]'") as err:
        export_policy(make_algo("bc"), "onnx", tmp_path / "p.onnx")
    assert str(err.value) == ONNX_NEEDS
    assert not any(tmp_path.iterdir())


# -- the sidecar and the stochastic rule --------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", ALGORITHMS)
def test_sidecar_describes_the_policy(name, fmt, exported):
    algo, path, sidecar = exported(name, fmt)
    assert json.loads(sidecar_path(path).read_text()) == sidecar
    assert sidecar_path(path).name == path.name + ".json"
    assert sidecar["format"] == fmt and sidecar["file"] == path.name and sidecar["algorithm"] == name
    assert sidecar["selection_rule"] == algo.selection_rule(True) and sidecar["deterministic"] is True
    assert sidecar["draws_random_numbers"] is (name in RANDOM_RULES)
    assert sidecar["observation"] == {"shape": ["batch", 5], "dtype": "float32", "normalised_inside": True}
    assert sidecar["action"] == {
        "shape": ["batch", 3],
        "dtype": "float32",
        "low": [-1.0, -0.5, -1.0],
        "high": [1.0, 0.5, pytest.approx(0.8)],
        "clipped_inside": True,
    }
    assert sidecar["torch"] == torch.__version__ and sidecar["offrl_zoo"] == __version__
    assert all(sidecar[k] is None for k in ("task", "env_id", "source_run", "dataset_sha256", "run_seed"))
    if fmt == "onnx":
        assert sidecar["input"] == "observation" and sidecar["output"] == "action" and sidecar["onnx_opset"] >= 18


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_stochastic_export_samples(fmt, exported):
    algo, path, sidecar = exported("iql", fmt, deterministic=False)
    assert sidecar["deterministic"] is False and sidecar["selection_rule"] == algo.selection_rule(False)
    policy = ExportedPolicy(path, seed=0)
    obs = observations(7)
    first, second = policy.act(obs, deterministic=False), policy.act(obs, deterministic=False)
    assert not torch.allclose(first, second)
    det = ExportedPolicy(exported("iql", fmt)[1])
    assert torch.equal(det.act(obs), det.act(obs))
    with pytest.raises(ConfigError, match="stochastic"):
        policy.act(obs, deterministic=True)


# -- evaluation ---------------------------------------------------------------------------------------
def test_evaluating_an_exported_random_rule_repeats_acts_evaluation(tmp_path):
    """The evaluator seeds torch's generator; a TorchScript policy draws from it as act does, so even
    DTQL's sampled candidates give the very returns of evaluating the algorithm."""
    task = get_task(TOY)
    space = task.make_env().action_space
    spec = DataSpec(1, 2, tuple(space.low.tolist()), tuple(space.high.tolist()))
    algo = make_algo("dtql", spec)
    export_policy(algo, "torchscript", tmp_path / "dtql.pt")
    evaluator = Evaluator(task, 300, seed=100, deterministic=True)
    expected = evaluator(algo)
    got = evaluator(cast(Algorithm, ExportedPolicy(tmp_path / "dtql.pt")))
    evaluator.close()
    assert got["returns"] == expected["returns"]
    assert (
        evaluator.protocol(algo)["selection"] == "sample 1 of 16 policy samples with probability softmax(min target Q)"
    )


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_policy_gives_the_runs_evaluation(tmp_path, capsys):
    """A tiny BC run on a toy: `eval --policy` of either export prints `eval RUN`'s result and protocol,
    apart from the deterministic flag (the toy's runs sample, the export is deterministic: BC's actor
    ignores the flag)."""
    train = ["train", "bc", "--task", TOY, "--steps", "200", "--out", str(tmp_path), "--no-progress"]
    code, _, err = run_cli(capsys, *train, "--eval-every", "200", "--eval-episodes", "200", "hidden=[32,32]")
    assert code == 0, err
    run_dir = tmp_path / "bc" / TOY / "seed0"
    code, run_out, err = run_cli(capsys, "eval", str(run_dir))
    assert code == 0, err
    expected = json.loads(run_out)
    for fmt, suffix in FORMATS.items():
        code, out, err = run_cli(capsys, "export", str(run_dir), "--format", fmt)
        assert code == 0, err
        policy = run_dir / f"policy{suffix}"
        assert out.startswith(f"{policy}: bc policy, {fmt}; deterministic policy output; draws no random numbers")
        sidecar = json.loads(sidecar_path(policy).read_text())
        config = (run_dir / "config.yaml").read_text()
        assert sidecar["task"] == TOY and sidecar["source_run"] == str(run_dir.resolve())
        assert sidecar["dataset_sha256"] and f"dataset_sha256: {sidecar['dataset_sha256']}" in config
        code, out, err = run_cli(capsys, "eval", "--policy", str(policy))
        assert code == 0, err
        got = json.loads(out)
        assert got.pop("policy") == str(policy)
        assert got["protocol"].pop("deterministic") is True and expected["protocol"]["deterministic"] is False
        assert got["return_mean"] == pytest.approx(expected["return_mean"], abs=1e-6)
        assert got["protocol"] == {k: v for k, v in expected["protocol"].items() if k != "deterministic"}
    code, out, err = run_cli(capsys, "eval", "--policy", str(run_dir / "policy.pt"), "--env", "toy-25_gaussian-near")
    assert code == 0, err
    assert json.loads(out)["protocol"]["episode_seeds"] == "100..299"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval"], "give a run directory or --policy FILE"),
        (["eval", "RUN", "--policy", "p.pt"], "not both"),
        (["eval", "RUN", "--env", "Hopper-v5"], "--env goes with --policy"),
        (["eval", "--policy", "missing.pt"], "missing.pt: no such policy file"),
        (["export", "RUN"], "the following arguments are required: --format"),
    ],
)
def test_eval_and_export_refuse_bad_command_lines(argv, message, capsys):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err


def test_eval_policy_refuses_the_other_rule_and_a_missing_sidecar(exported, capsys, tmp_path):
    _, path, _ = exported("bc", "torchscript")
    code, _, err = run_cli(capsys, "eval", "--policy", str(path), "--stochastic")
    assert code == 2 and "--stochastic" in err and "deterministic rule" in err
    code, _, err = run_cli(capsys, "eval", "--policy", str(path), "--env", "NoSuchEnv-v0")
    assert code == 2 and "neither a registered task" in err
    lone = tmp_path / "lone.pt"
    lone.write_bytes(path.read_bytes())
    code, _, err = run_cli(capsys, "eval", "--policy", str(lone))
    assert code == 2 and "no lone.pt.json next to it" in err
