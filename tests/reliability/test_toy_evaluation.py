"""Toy evaluations say what they measured: sampled actions by default (the DTQL paper reads these policies
by their samples), the sample metrics of docs/toy.md in every record, and a score labelled for what it is
(not D4RL's). Locomotion evaluation is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from offrl_zoo.bench import plots, render
from offrl_zoo.bench.report import build_report
from offrl_zoo.cli.main import main
from offrl_zoo.envs import get_task, toy
from offrl_zoo.envs.tasks import D4RL_SCORE, TOY_SCORE
from offrl_zoo.train import Evaluator, RunRequest, load_run, train

TASK = "toy-25_gaussian-far"
EPISODES = 200
SAMPLE_KEYS = {"normalized_reward", "in_support", "modes_hit", "top_mode_share", "distinct_actions"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds of IQL (a Gaussian policy: its samples differ, its deterministic action is the mean)
    and of BC (a deterministic actor: one action whatever the protocol), evaluated once each."""
    root = tmp_path_factory.mktemp("toy")
    for algorithm in ("iql", "bc"):
        for seed in (0, 1):
            request = RunRequest(
                algorithm,
                task=TASK,
                seed=seed,
                steps=20,
                eval_every=20,
                eval_episodes=EPISODES,
                overrides=["hidden=[32,32]"],
            )
            train(request, run_dir=root / "runs" / algorithm / TASK / f"seed{seed}", progress=False)
    return root


@pytest.fixture(scope="module")
def iql_run(store: Path) -> Path:
    return store / "runs" / "iql" / TASK / "seed0"


def _evals(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]


def test_toy_runs_evaluate_sampled_actions_and_record_the_sample_metrics(iql_run):
    (record,) = _evals(iql_run)
    protocol = record["protocol"]
    assert protocol["deterministic"] is False and protocol["selection"] == "Gaussian policy sample"
    assert protocol["score"] == TOY_SCORE and protocol["episodes"] == EPISODES
    assert record["score_std"] > 0 and len(set(record["returns"])) > 1  # a spread of samples, not one action
    samples = record["samples"]
    assert set(samples) == SAMPLE_KEYS and samples["distinct_actions"] == EPISODES
    assert 0.0 <= samples["in_support"] <= 1.0 and 0 <= samples["modes_hit"] <= 25
    # the samples' mean reward is the score: 100 · mean reward / best dataset reward
    assert 100 * samples["normalized_reward"] == pytest.approx(record["score_mean"], rel=1e-5)
    done = json.loads((iql_run / "done").read_text())
    assert done["final_eval"]["samples"] == samples  # the report reads them from here


def test_a_deterministic_toy_evaluation_is_one_action_and_says_so(iql_run):
    algo, task, _ = load_run(iql_run)
    evaluator = Evaluator(task, EPISODES, seed=100, deterministic=True)
    result = evaluator(algo)
    evaluator.close()
    assert result["score_std"] == 0.0 and result["samples"]["distinct_actions"] == 1
    assert evaluator.protocol(algo)["deterministic"] is True


@pytest.mark.parametrize(("flags", "deterministic"), [([], False), (["--deterministic"], True)])
def test_offrl_zoo_eval_follows_the_task_unless_asked(iql_run, capsys, flags, deterministic):
    assert main(["eval", str(iql_run), "--episodes", "50", *flags]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"]["deterministic"] is deterministic
    assert out["samples"]["distinct_actions"] == (1 if deterministic else 50)


def test_toy_metrics_of_known_samples():
    means = toy.gaussian_grid_means()
    corner = np.tile(means[0], (10, 1)).astype(np.float32)  # (-10, -10) ten times: one mode, one action
    metrics = toy.toy_metrics(corner, "25_gaussian", "far")
    assert (metrics["in_support"], metrics["modes_hit"], metrics["top_mode_share"]) == (1.0, 1, 1.0)
    assert metrics["distinct_actions"] == 1
    spread = toy.toy_metrics(means.astype(np.float32), "25_gaussian", "far")
    assert (spread["modes_hit"], spread["distinct_actions"], spread["top_mode_share"]) == (25, 25, 1 / 25)


def test_the_protocol_label_comes_from_the_task():
    for task_id in ("toy-25_gaussian-far", "toy-swiss_roll_2D-near"):
        toy_task = get_task(task_id)
        assert toy_task.score_label == TOY_SCORE != D4RL_SCORE
        assert toy_task.deterministic_eval is False and toy_task.sample_metrics is not None
    hopper = get_task("hopper-medium-v2")  # locomotion: D4RL's score, deterministic actions, no samples
    assert (hopper.score_label, hopper.deterministic_eval, hopper.sample_metrics) == (D4RL_SCORE, True, None)


def test_the_report_of_toy_runs_evaluated_once(store):
    report = build_report(store, reps=10)
    (task,) = report.tasks
    cells = {c.algorithm: c for c in task.cells}
    assert task.score_label == TOY_SCORE and plots.value_label(task) == TOY_SCORE
    assert cells["bc"].one_action and not cells["iql"].one_action  # bc's actor is deterministic
    assert all(c.best is None for c in cells.values())  # one evaluation: best would only repeat final
    assert cells["iql"].samples["in_support"]["n"] == 2
    md = render.render_markdown(report, {})
    assert f"Value: score ({TOY_SCORE})" in md and "D4RL" not in md
    assert "| algorithm | final | in-support | modes hit | top-mode share | seeds |" in md
    assert render.BEST_DROPPED in md and render.ONE_ACTION_NOTE in md and " (one action) |" in md
