"""`offrl-zoo compare`: planning, the results store, kill-and-resume through the real CLI, the Ray executor."""

from __future__ import annotations

import json

import pytest

from offrl_zoo.bench.estimate import estimate_run
from offrl_zoo.bench.executors import TrainSettings, run_ray
from offrl_zoo.bench.sweep import RunSpec, plan, record_sweep, run_status
from offrl_zoo.errors import ConfigError, UnknownNameError

TASKS = ["toy-25_gaussian-far", "toy-25_gaussian-hard"]


def test_plan_checks_names_and_reports_unsupported():
    sweep = plan(["srpo", "bc"], None, ["hopper-random-v2"], 2, "quick")
    assert [(u["algorithm"], u["task"]) for u in sweep.unsupported] == [("srpo", "hopper-random-v2")]
    assert {r.algorithm for r in sweep.runs} == {"bc"} and len(sweep.runs) == 2
    assert sweep.runs[0].steps == 20_000
    with pytest.raises(UnknownNameError, match="Did you mean"):
        plan(["dtqll"], "toy", None, 1, "quick")
    with pytest.raises(ConfigError, match="--budget"):
        plan(["bc"], "toy", None, 1, "fast")
    toy = plan(["dtql", "bc"], "toy", None, 1, "quick")
    assert {(r.algorithm, r.preset) for r in toy.runs} == {("dtql", "quick"), ("bc", None)}
    assert {r.budget_config for r in toy.runs} == {(("batch_size", 256),)} and toy.runs[0].steps == 1000


def test_only_runs_that_can_share_a_stage_wait_for_each_other():
    from offrl_zoo.bench.executors import shares_stages

    runs = {r.algorithm: r for r in plan(["dtql", "dtql-kl", "iql"], None, ["hopper-medium-v2"], 1, "paper").runs}
    assert runs["dtql"].shared_kinds == runs["dtql-kl"].shared_kinds == ("dtql-pretrain/1",)
    assert shares_stages((runs["dtql"],), (runs["dtql-kl"],))
    assert not shares_stages((runs["dtql"],), (runs["iql"],))


def test_store_refuses_other_settings_and_foreign_folders(tmp_path):
    record_sweep(tmp_path / "s", plan(["bc"], "toy", None, 1, "quick"))
    record_sweep(tmp_path / "s", plan(["iql"], "toy", None, 2, "quick"))  # more algorithms and seeds merge
    merged = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert merged["algorithms"] == ["bc", "iql"] and merged["seeds"] == [0, 1]
    with pytest.raises(ConfigError, match="budget"):
        record_sweep(tmp_path / "s", plan(["bc"], "toy", None, 1, "100"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a results store"):
        record_sweep(tmp_path / "other", plan(["bc"], "toy", None, 1, "quick"))


def test_estimate_is_measured_from_warm_up_updates():
    est = estimate_run(RunSpec("bc", "toy-25_gaussian-far", 0, steps=100), 100, 100, __import__("torch").device("cpu"))
    assert est.stage_steps == {"train": 100} and est.train_s > 0 and est.eval_s > 0


def test_ray_executor_runs_a_small_sweep(tmp_path):
    ray = pytest.importorskip("ray")
    store = tmp_path / "store"
    sweep = plan(["bc"], None, TASKS[:1], 2, "40", ["hidden=[32,32]"])
    record_sweep(store, sweep)
    try:
        results = run_ray(sweep.runs, store, TrainSettings(eval_episodes=100, eval_every=40), None, log=lambda m: None)
    finally:
        ray.shutdown()
    assert set(results.values()) == {"done"}
    assert all(run_status(spec.run_dir(store)) == "done" for spec in sweep.runs)


def test_estimate_counts_a_shared_stage_once_per_task_and_seed():
    from offrl_zoo.bench.estimate import RunEstimate, sweep_compute

    kind = "dtql-pretrain/1"
    per_algorithm = {
        "dtql": RunEstimate("dtql", "t", {}, 30.0, 5.0, {kind: 10.0}),
        "dtql-kl": RunEstimate("dtql-kl", "t", {}, 40.0, 5.0, {kind: 10.0}),
        "iql": RunEstimate("iql", "t", {}, 20.0, 1.0, {}),
    }
    runs = [RunSpec(a, "t", seed) for seed in (0, 1) for a in ("dtql", "dtql-kl", "iql")]
    estimates = {spec: per_algorithm[spec.algorithm] for spec in runs}
    compute, saved = sweep_compute(runs, estimates)
    assert saved == 2 * 10.0  # dtql-kl reuses dtql's pretraining, once per seed
    assert compute == 2 * (35.0 + 45.0 + 21.0) - saved


def test_a_resumed_run_is_priced_at_what_is_left_after_its_checkpoint():
    from offrl_zoo.bench.estimate import RunTiming, StageTiming, sweep_compute

    kind = "dtql-pretrain/1"
    stages = (StageTiming("pretrain", 50, 0.01, False, kind), StageTiming("train", 100, 0.02, True, None))
    timing = RunTiming("dtql", "t", stages, eval_s=1.0)
    whole = timing.estimate(None, 25)
    assert (whole.stage_steps, whole.eval_s, whole.whole) == ({"pretrain": 50, "train": 100}, 4.0, None)
    assert whole.train_s == pytest.approx(2.5) and whole.shared_s == {kind: pytest.approx(0.5)}
    mid_train = timing.estimate(None, 25, resume_at=(1, 60))  # evaluated at 25 and 50; 75 and 100 to come
    assert (mid_train.stage_steps, mid_train.eval_s, mid_train.whole) == ({"pretrain": 0, "train": 40}, 2.0, whole)
    assert mid_train.train_s == pytest.approx(0.8) and mid_train.shared_s == {kind: 0.0}  # pretraining behind it
    resumed, fresh = RunSpec("dtql", "t", 0), RunSpec("dtql-kl", "t", 0)
    assert sweep_compute([resumed, fresh], {resumed: mid_train, fresh: whole}) == (pytest.approx(2.8 + 6.5 - 0.5), 0.5)
    mid_pretrain = timing.estimate(None, 25, resume_at=(0, 20))
    assert mid_pretrain.stage_steps == {"pretrain": 30, "train": 100} and mid_pretrain.eval_s == 4.0
    assert mid_pretrain.shared_s == {kind: pytest.approx(0.3)}
    assert timing.estimate(40, 25, resume_at=(1, 40)).total_s == 0  # capped at 40 steps a stage: all done


def test_compare_estimates_a_part_trained_run_from_its_checkpoint(tmp_path, interrupted, capsys):
    """A run killed after its step-200 checkpoint: re-running compare prices the 200 steps it has left."""
    from offrl_zoo.bench.sweep import resume_point
    from offrl_zoo.cli import main
    from offrl_zoo.train import RunRequest, train

    task, store = TASKS[0], tmp_path / "store"
    spec = RunSpec("bc", task, 0, steps=400)
    with interrupted(250):
        request = RunRequest("bc", task=task, steps=400, checkpoint_every=100, eval_every=400)
        train(request, run_dir=spec.run_dir(store), progress=False)
    assert run_status(spec.run_dir(store)) == "partial" and resume_point(spec.run_dir(store)) == (0, 200)
    capsys.readouterr()
    argv = ["compare", "bc", "--tasks", task, "--seeds", "1", "--budget", "400", "--out", str(store), "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "runs: 1 partial" in out
    (line,) = [line for line in out.splitlines() if line.strip().startswith("bc ")]
    assert "train 400" in line and line.split("× 1; ")[1].startswith("1 part-trained, ≈ ")
    assert "      seed 0: at train 200/400 (its checkpoint), ≈ " in out


def test_vectorized_seeds_train_each_group_in_one_process(tmp_path):
    from offrl_zoo.bench.executors import run_local, seed_groups

    store = tmp_path / "store"
    sweep = plan(["td3bc", "bc"], None, TASKS[:1], 3, "40", ["hidden=[32,32]"])
    record_sweep(store, sweep)
    todo = [s for s in sweep.runs if not (s.algorithm == "bc" and s.seed == 1)]  # a gap splits bc's seeds
    groups = seed_groups(todo, vectorize=True)
    assert sorted(tuple(s.seed for s in g) for g in groups) == [(0,), (0, 1, 2), (2,)]
    settings = TrainSettings(eval_episodes=20, eval_every=40, vectorize_seeds=True)
    results = run_local(todo, store, settings, jobs=1, log=lambda m: None)
    assert set(results.values()) == {"done"} and len(results) == len(todo)
    td3bc = [s for s in todo if s.algorithm == "td3bc"]
    for spec in td3bc:
        provenance = json.loads((spec.run_dir(store) / "provenance.json").read_text())
        assert provenance["vectorized_seeds"] == [0, 1, 2]
    logs = {(s.run_dir(store) / "train.log").stat().st_ino for s in td3bc}
    assert len(logs) == 1  # one process, one log, linked into each run directory


def test_seeds_are_batched_by_default_on_cuda_only():
    """compare batches an algorithm's seeds on a GPU unless told not to, and never unasked on the CPU."""
    import torch

    from offrl_zoo.cli.compare import seeds_batched

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert seeds_batched(None, cuda) and not seeds_batched(None, cpu)
    assert not seeds_batched(False, cuda) and seeds_batched(True, cpu)


def test_seeds_added_later_join_the_same_store(tmp_path):
    """``--seed S --seeds N`` plans seeds S..S+N-1; recorded into a store that already has seed 0, the sweep
    then lists both, so the report covers them together."""
    from offrl_zoo.cli.args import seed_range

    store = tmp_path / "store"
    record_sweep(store, plan(["bc"], None, TASKS[:1], 1, "40"))
    later = plan(["bc"], None, TASKS[:1], seed_range(3, 2), "40")
    assert [r.seed for r in later.runs] == [3, 4]
    record_sweep(store, later)
    assert json.loads((store / "sweep.json").read_text())["seeds"] == [0, 3, 4]


def test_compare_refuses_to_mix_data_with_the_finished_runs_of_a_restored_store(tmp_path, monkeypatch, capsys):
    """A store restored on another CPU type holds finished runs on one draw of the generated data while this
    machine's cache holds another: runs trained into it could never share its report, so compare says so
    before training (the plan of --dry-run lists it) and trains nothing; on the same data it goes ahead."""
    from offrl_zoo.bench.sweep import data_conflicts
    from offrl_zoo.cli import main

    monkeypatch.setenv("OFFRL_ZOO_CACHE", str(tmp_path / "cache"))
    task = "hopper-medium-v2"
    meta = tmp_path / "cache" / "generated" / f"{task}.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"sha256": "b" * 64}))
    store = tmp_path / "store"
    finished = store / "runs" / "bc" / task / "seed0"
    finished.mkdir(parents=True)
    (finished / "done").write_text("{}")
    (finished / "provenance.json").write_text(json.dumps({"dataset": {"source": "generated", "sha256": "a" * 64}}))
    todo = plan(["bc"], None, [task], 2, "40").runs[1:]  # seed 1: still to train
    (conflict,) = data_conflicts(store, todo, "auto")
    assert conflict == f"{task} (finished runs: aaaaaaaaaaaa, here: bbbbbbbbbbbb)"
    assert data_conflicts(store, todo, "d4rl") == []  # no real file cached: nothing settles what it would load
    argv = ["compare", "bc", "--tasks", task, "--seeds", "2", "--budget", "40", "--out", str(store), "--no-estimate"]
    assert main([*argv, "--dry-run"]) == 0
    assert f"data conflict: {store}'s finished runs trained on other data" in capsys.readouterr().out
    assert main([*argv, "--yes"]) != 0
    assert (
        "could not share its report" in capsys.readouterr().err
        and not (store / "runs" / "bc" / task / "seed1").exists()
    )
    meta.write_text(json.dumps({"sha256": "a" * 64}))
    assert data_conflicts(store, todo, "auto") == []


def test_a_store_keeps_its_suite_while_later_calls_name_only_its_tasks(tmp_path):
    """``compare ... --tasks walker2d-medium-v2`` into a gym-medium store (a run resumed or added) leaves the store
    a gym-medium one; a task from elsewhere makes it a store of several suites."""
    store = tmp_path / "store"
    record_sweep(store, plan(["bc"], "gym-medium", None, 1, "40"))
    record_sweep(store, plan(["bc"], None, ["walker2d-medium-v2"], 1, "40"))
    assert json.loads((store / "sweep.json").read_text())["suite"] == "gym-medium"
    record_sweep(store, plan(["bc"], None, TASKS[:1], 1, "40"))
    assert json.loads((store / "sweep.json").read_text())["suite"] is None
