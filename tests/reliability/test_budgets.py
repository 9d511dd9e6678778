"""Budgets and presets: a budget caps every algorithm of a comparison alike, and a preset made for one
suite never applies to another (docs/guarantees.md; docs/compare.md, Budget)."""

from __future__ import annotations

import pytest

from offrl_zoo import registry
from offrl_zoo.bench import estimate
from offrl_zoo.bench.sweep import Budget, RunSpec, plan
from offrl_zoo.cli import main
from offrl_zoo.config import resolve
from offrl_zoo.errors import ConfigError

GYM = ["dtql", "dtql-kl", "srpo", "iql"]


def test_gym_medium_quick_caps_every_stage_of_every_algorithm_alike():
    sweep = plan(GYM, "gym-medium", None, 1, "quick")
    assert {r.algorithm for r in sweep.runs} == set(GYM) and not sweep.unsupported
    assert {r.steps for r in sweep.runs} == {20_000}
    assert {r.preset for r in sweep.runs} == {None}  # DTQL's toy preset stays on the toys
    assert {steps for r in sweep.runs for _, steps in r.stage_steps} == {20_000}


def test_the_toy_preset_applies_on_toy_tasks_only():
    quick = Budget.parse("quick")
    for name in ("dtql", "dtql-kl"):
        cls = registry.get(name)
        assert quick.for_run(cls, "toy-25_gaussian-far").preset == "quick"
        assert quick.for_run(cls, "hopper-medium-v2").preset is None
    mixed = {
        (r.algorithm, r.task): r
        for r in plan(["dtql", "iql"], None, ["toy-25_gaussian-far", "hopper-medium-v2"], 1, "quick").runs
    }
    assert mixed["dtql", "toy-25_gaussian-far"].steps == mixed["iql", "toy-25_gaussian-far"].steps == 1000
    assert mixed["dtql", "hopper-medium-v2"].steps == mixed["iql", "hopper-medium-v2"].steps == 20_000
    assert mixed["dtql", "hopper-medium-v2"].preset is None


def test_the_toy_comparison_keeps_its_quick_budget():
    """README's `compare dtql dtql-kl iql --suite toy`: 1 000 steps, minibatches of 256, DTQL's preset."""
    sweep = plan(["dtql", "dtql-kl", "iql"], "toy", None, 3, "quick")
    assert {(r.algorithm, r.preset) for r in sweep.runs} == {("dtql", "quick"), ("dtql-kl", "quick"), ("iql", None)}
    assert {r.steps for r in sweep.runs} == {1000} and {r.budget_config for r in sweep.runs} == {(("batch_size", 256),)}
    dtql = next(r for r in sweep.runs if r.algorithm == "dtql")
    cfg = dtql.config()
    assert (cfg.batch_size, cfg.sampling) == (256, "uniform") and dtql.stage_steps == (("train", 1000),)


def test_the_estimate_resolves_a_runs_config_as_train_does():
    """The user's key=value wins over the budget's values in the estimate as in training (command line
    after the budget's --config file)."""
    sweep = plan(["iql"], None, ["toy-25_gaussian-far"], 1, "quick", overrides=["batch_size=64"])
    (run,) = sweep.runs
    assert run.budget_config == (("batch_size", 256),)
    assert run.config().batch_size == 64


@pytest.mark.parametrize("algorithm", ["dtql", "dtql-kl"])
def test_a_preset_out_of_its_scope_is_refused_in_one_line(algorithm, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OFFRL_ZOO_CACHE", str(tmp_path / "cache"))
    args = ["train", algorithm, "--task", "hopper-medium-v2", "--preset", "quick", "--out", str(tmp_path / "runs")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "preset 'quick' of" in err and "'toy-*'" in err and "hopper-medium-v2" in err, err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()
    with pytest.raises(ConfigError, match="made for tasks 'toy-\\*' only"):
        resolve(registry.get(algorithm), "walker2d-medium-v2", "quick")


def _fake_timing(spec: RunSpec, eval_episodes: int | None, device: object) -> estimate.RunTiming:
    """A run's timing without the warm-up updates: 50 ms per update, 1 s per evaluation."""
    stages = tuple(estimate.StageTiming(name, 1_000_000, 0.05, True, None) for name, _ in spec.stage_steps)
    return estimate.RunTiming(spec.algorithm, spec.task, stages, 1.0)


def test_the_dry_run_plan_names_its_alternatives_and_generates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OFFRL_ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(estimate, "measure_run", _fake_timing)
    store = tmp_path / "store"
    args = ["compare", "dtql", "srpo", "--suite", "gym-medium", "--dry-run", "--jobs", "2", "--out", str(store)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "(≤ 20000 steps per stage for every algorithm), no other changes" in out, out
    assert "pretrain 20000, train 20000" in out and "behaviour 20000, critic 20000, policy 20000" in out, out
    assert "generating 3 dataset(s)" in out and "3,000,000 rows" in out, out
    assert "cheaper: with --budget 5000: ≈ 1.7 h" in out, out  # the largest that fits in 2 h at 50 ms per update
    # DTQL 20 000 × (11.56 + 20.89) ms × 3 + SRPO 20 000 × (5.78 + 4.48 + 4.98) ms × 3 on the reference H200
    assert "on a GPU (--device cuda): ≈ 2.4 h of training updates" in out and "NVIDIA H200" in out, out
    # captured: (DTQL 20 000 × (1.139 + 0.781) ms + SRPO 20 000 × (1.275 + 0.458 + 0.537) ms) × 3 tasks × 3 seeds
    assert "with --fast (updates captured as CUDA graphs) ≈ 13 min" in out, out
    assert not (tmp_path / "cache").exists() and not store.exists()


def test_cached_datasets_are_not_counted_as_generation(tmp_path, monkeypatch):
    from offrl_zoo.data.generation.datasets import generated_path

    monkeypatch.setenv("OFFRL_ZOO_CACHE", str(tmp_path))
    tasks = ["hopper-medium-v2", "hopper-medium-expert-v2", "toy-25_gaussian-far"]
    assert estimate.rows_to_generate(tasks, "auto") == {
        "hopper-medium-v2": 1_000_000,
        "hopper-medium-expert-v2": 2_000_000,
    }
    path = generated_path("hopper-medium-v2")
    path.parent.mkdir(parents=True)
    path.touch()
    assert estimate.rows_to_generate(tasks, "generated") == {"hopper-medium-expert-v2": 1_000_000}  # the expert half
    assert estimate.rows_to_generate(tasks, "d4rl") == {}


def test_the_gpu_alternative_prices_every_builtin_stage_and_names_what_it_cannot():
    from offrl_zoo import registry
    from offrl_zoo.bench.estimate import RunEstimate, gpu_reference, gpu_training_seconds
    from offrl_zoo.bench.sweep import RunSpec
    from offrl_zoo.testing import tiny_spec

    ms = gpu_reference()["ms_per_update"]
    for name in registry.builtins():
        cls = registry.get(name)
        assert {s.name for s in cls(tiny_spec(), cls.Config()).stages()} <= set(ms[name]), name
    runs = [RunSpec("iql", "hopper-medium-v2", 0), RunSpec("mlbc", "hopper-medium-v2", 0)]
    estimates = {spec: RunEstimate(spec.algorithm, spec.task, {"train": 1000}, 0.0, 0.0, {}) for spec in runs}
    seconds, unknown, _ = gpu_training_seconds(runs, estimates)
    assert seconds == 1000 * ms["iql"]["train"] / 1000 and unknown == ["mlbc"]
    captured = gpu_reference()["captured"]["ms_per_update"]
    seconds, unknown, at_eager = gpu_training_seconds(runs, estimates, captured=True)
    assert seconds == 1000 * captured["iql"]["train"] / 1000 and unknown == ["mlbc"] and at_eager == []
    dql = [RunSpec("dql", "hopper-medium-v2", 0)]
    dql_est = {dql[0]: RunEstimate("dql", "hopper-medium-v2", {"train": 1000}, 0.0, 0.0, {})}
    seconds, _, at_eager = gpu_training_seconds(dql, dql_est, captured=True)  # its capture failed in the probe
    assert seconds == ms["dql"]["train"] and at_eager == ["dql:train"]
