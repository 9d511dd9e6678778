"""The benchmark report (offrl_zoo.bench: results, tables, stats, report) on a small results store written by hand.

Store: bc and iql on hopper-medium-v2 (generated data) and toy-25_gaussian-far (toy data), 3 planned
seeds; walker2d-medium-v2 has bc runs and is unsupported for iql (sweep.json). iql/hopper seed 1 failed
(with a bogus evaluation that must never show), iql/toy seed 2 is unfinished. Stds are over seeds with
ddof=1 (the report's documented choice).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml
from matplotlib.figure import Figure

from offrl_zoo.bench import plots, render, results, stats, tables
from offrl_zoo.bench import report as rep
from offrl_zoo.envs.tasks import TOY_SCORE

REPS = 200  # bootstrap replications: enough to exercise the code, cheap on a CPU
SEEDS = [0, 1, 2]
SHA = {"hopper-medium-v2": "a" * 64, "toy-25_gaussian-far": "b" * 64, "walker2d-medium-v2": "c" * 64}
SOURCE = {"hopper-medium-v2": "generated", "toy-25_gaussian-far": "toy", "walker2d-medium-v2": "generated"}
# final score per (algorithm, task, seed) and the best over each run's evaluations
FINAL = {
    ("bc", "hopper-medium-v2"): {0: 50.0, 1: 52.0, 2: 54.0},
    ("iql", "hopper-medium-v2"): {0: 52.0, 2: 64.0},
    ("bc", "toy-25_gaussian-far"): {0: 80.0, 1: 85.0, 2: 90.0},
    ("iql", "toy-25_gaussian-far"): {0: 84.0, 1: 97.0},
    ("bc", "walker2d-medium-v2"): {0: 70.0, 1: 72.0, 2: 74.0},
}
BEST_BONUS = {0: 5.0, 1: 0.0, 2: 2.0}  # the first evaluation of seed s scores final + BEST_BONUS[s]


def _protocol(task: str, alg: str) -> dict:
    return {
        "episodes": 10,
        "parallel_envs": 10,
        "env_id": task.split("-")[0],
        "env_kwargs": {},
        "horizon": 1000,
        "gymnasium": "1.1.1",
        "mujoco": "3.3.0",
        "episode_seeds": "100..109",
        "deterministic": True,
        "selection": f"{alg} deterministic action",
        "score": "D4RL normalised score x100",
        "note": "v5 envs",
    }


def _eval(score: float | None, stage: str, step: int, protocol: dict) -> dict:
    return {
        "score_mean": score,
        "score_std": 1.0,
        "return_mean": 1000.0 + (score or 0.0),
        "return_std": 3.0,
        "returns": [1.0],
        "lengths": [1],
        "stage": stage,
        "step": step,
        "time": 1.0,
        "protocol": protocol,
    }


def _write_run(
    store: Path, alg: str, task: str, seed: int, status: str, final: float | None = None, cost: bool = True
) -> Path:
    run = store / "runs" / alg / task / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {"request": {"algorithm": alg, "task": task, "seed": seed}, "task": task, "dataset_sha256": SHA[task]}
        )
    )
    protocol = _protocol(task, alg)
    # iql runs two stages whose names sort against the run order: "warmup" (100 steps) then "policy" (200).
    stages = (
        {
            "warmup": {"planned_steps": 100, "run_steps": 100, "batch_size": 8},
            "policy": {"planned_steps": 200, "run_steps": 200, "batch_size": 8},
        }
        if alg == "iql"
        else {"train": {"planned_steps": 200, "run_steps": 200, "batch_size": 8}}
    )
    last = "policy" if alg == "iql" else "train"
    (run / "provenance.json").write_text(
        json.dumps(
            {
                "dataset": {"source": SOURCE[task], "dataset_id": task, "sha256": SHA[task], "extra": {}},
                "device": "cpu",
                "threads": 1,
                "protocol": protocol,
                "stages": stages,
                "shortened": False,
            },
            sort_keys=True,
        )
    )
    metrics = (
        [
            {"stage": "warmup", "step": 100, "global_step": 100, "time": 1.0, "updates_per_s": 100.0, "loss": 1.0},
            {"stage": "policy", "step": 100, "global_step": 200, "time": 2.0, "updates_per_s": 100.0, "loss": 1.0},
        ]
        if alg == "iql"
        else [{"stage": "train", "step": 100, "global_step": 100, "time": 1.0, "loss": 1.0}]
    )
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    score = 999.0 if status == "failed" else final
    evals = (
        []
        if score is None
        else [_eval(score + BEST_BONUS[seed], last, 100, protocol), _eval(score, last, 200, protocol)]
    )
    (run / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    if status == "done":
        final_eval = {k: v for k, v in evals[-1].items() if k not in ("returns", "lengths")}
        done = {"final_eval": final_eval, "elapsed_s": 10.0 + seed}
        if cost:
            done["cost"] = {
                "updates": 300 if alg == "iql" else 200,
                "updates_per_s": 100.0 + seed,
                "reused_stage_steps": 100 if alg == "iql" else 0,
                "act_ms_1": 0.5,
                "act_ms_16": 0.75,
                "nfe_per_action": 1,
                "peak_rss_mb": 500.0,
                "peak_cuda_mb": None,
                "device": "cpu",
                "processor": "Test CPU (AVX2)",
                "threads": 1,
            }
        (run / "done").write_text(json.dumps(done))
    elif status == "failed":
        (run / "failed").write_text(
            json.dumps({"error": "loss became nan\ntraceback", "kind": "diverged", "step": 150})
        )
    return run


def make_store(root: Path) -> Path:
    store = root / "store"
    for (alg, task), finals in FINAL.items():
        for seed, value in finals.items():
            no_cost = (alg, task, seed) == ("bc", "toy-25_gaussian-far", 2)  # an older run: no cost record
            _write_run(store, alg, task, seed, "done", value, cost=not no_cost)
    _write_run(store, "iql", "hopper-medium-v2", 1, "failed")
    _write_run(store, "iql", "toy-25_gaussian-far", 2, "unfinished")
    (store / "sweep.json").write_text(
        json.dumps(
            {
                "algorithms": ["iql", "bc"],
                "suite": "test",
                "tasks": sorted(SHA),
                "seeds": SEEDS,
                "budget": "quick",
                "unsupported": [{"algorithm": "iql", "task": "walker2d-medium-v2", "reason": "no walker for iql here"}],
            }
        )
    )
    return store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[rep.Report, Path]:
    store = make_store(tmp_path_factory.mktemp("report"))
    report = rep.build_report(store, reps=REPS)
    return report, render.write_report(report)


def _cell(report: rep.Report, task: str, alg: str) -> tables.Cell:
    return next(c for t in report.tasks if t.task == task for c in t.cells if c.algorithm == alg)


def test_per_task_mean_std_final_and_best(built):
    report, _ = built
    for (alg, task), finals in FINAL.items():
        cell = _cell(report, task, alg)
        values = [finals[s] for s in sorted(finals)]
        bests = [finals[s] + max(BEST_BONUS[s], 0.0) for s in sorted(finals)]
        assert cell.final["mean"] == pytest.approx(np.mean(values))
        assert cell.final["std"] == pytest.approx(np.std(values, ddof=1))
        assert cell.best["mean"] == pytest.approx(np.mean(bests))
        assert cell.best["std"] == pytest.approx(np.std(bests, ddof=1))
        assert (cell.finished, cell.planned) == (len(finals), 3)


def test_failed_unfinished_unsupported_cells(built):
    report, out = built
    failed = _cell(report, "hopper-medium-v2", "iql")
    assert (failed.status, failed.failed, render._fmt_seeds(failed)) == ("ok", 1, "2/3, failed (1)")
    assert render._fmt_seeds(_cell(report, "toy-25_gaussian-far", "iql")) == "2/3, unfinished (1)"
    assert render._fmt_value(_cell(report, "walker2d-medium-v2", "iql"), "final") == "unsupported"
    md = (out / "report.md").read_text()
    assert "failed (1)" in md and "unsupported" in md and "999" not in md  # a failed run never gives a score
    assert "- runs/iql/toy-25_gaussian-far/seed2: logged to policy step 100 of 200\n" in md  # how far it got
    (unfinished,) = [r for r in report.runs if r.status == "unfinished"]
    evaluated = replace(unfinished, curve=[(150, 12.34, 1.0), (200, None, 2.0)])
    assert render._progress(evaluated).endswith("; last evaluation 12.3 (score) at global step 150")
    all_failed = tables._cell("iql", [r for r in report.runs if r.status == "failed"], "score", 3, None, None)
    assert render._fmt_value(all_failed, "final") == "failed (1)"
    csv_rows = (out / "runs.csv").read_text().splitlines()
    assert any(row.startswith("iql,hopper-medium-v2,1,failed,score,,,") for row in csv_rows)


def test_aggregate_matrices_exclude_failed_and_use_common_tasks(built):
    report, _ = built
    matrices, tasks, info = stats.score_matrices(report.tasks, report.runs)
    assert tasks == ["hopper-medium-v2", "toy-25_gaussian-far"]  # walker: iql unsupported there
    # seed counts differ (iql has 2 finished per task): the lowest 2 seeds of each; the failed seed is not one
    np.testing.assert_array_equal(matrices["iql"], [[52.0, 84.0], [64.0, 97.0]])
    np.testing.assert_array_equal(matrices["bc"], [[50.0, 80.0], [52.0, 85.0]])
    assert any("common minimum 2" in n for n in info["notes"])
    assert any("walker2d-medium-v2: excluded" in n for n in info["notes"])
    agg = report.aggregate
    for alg in ("bc", "iql"):
        iqm = agg["metrics"][alg]["IQM"]
        assert iqm["estimate"] == pytest.approx(scipy.stats.trim_mean(matrices[alg].flatten(), 0.25))
        assert agg["metrics"][alg]["mean"]["estimate"] == pytest.approx(matrices[alg].mean())
        assert iqm["ci_low"] <= iqm["estimate"] <= iqm["ci_high"]


def test_probability_of_improvement_by_hand(built):
    report, _ = built
    # P(bc > iql) per task over all seed pairs, ties counting half:
    # hopper bc [50, 52] vs iql [52, 64]: only (52, 52), a tie -> 0.5 / 4; toy [80, 85] vs [84, 97]: (85 > 84) -> 1 / 4
    expected = (0.5 / 4 + 1 / 4) / 2
    poi = report.aggregate["probability_of_improvement"]
    assert poi["bc"]["iql"]["estimate"] == pytest.approx(expected)
    assert poi["iql"]["bc"]["estimate"] == pytest.approx(1 - expected)
    assert poi["bc"]["iql"]["ci_low"] <= expected <= poi["bc"]["iql"]["ci_high"]


def test_ci_unavailable_with_one_seed_or_one_task():
    task = tables.TaskReport("t", "score", [], [], [], [], [])
    runs = [
        results.RunResult("a", "t", 0, "x", "done", final_score=1.0),
        results.RunResult("b", "t", 0, "y", "done", final_score=2.0),
    ]
    agg = stats.aggregate([task], runs, reps=10)
    assert not agg["ci"] and "1 seed" in agg["ci_unavailable"] and "1 common task" in agg["ci_unavailable"]
    assert agg["metrics"]["b"]["IQM"] == {"estimate": 2.0, "ci_low": None, "ci_high": None}
    assert agg["probability_of_improvement"]["b"]["a"]["estimate"] == 1.0


def test_costs_reuse_sources_and_paper(built):
    report, out = built
    rows = {(r["algorithm"], r["task"]): r for r in report.costs}
    toy = rows["bc", "toy-25_gaussian-far"]
    assert toy["elapsed_s"] == pytest.approx(11.0) and toy["runs_with_cost"] == 2
    assert toy["updates_per_s"] == pytest.approx(100.5)  # seed 2 recorded no cost
    assert rows["iql", "hopper-medium-v2"]["peak_cuda_mb"] is None
    assert rows["iql", "hopper-medium-v2"]["device"] == "cpu (Test CPU (AVX2))"  # the chip the times are from
    reuse = {r["algorithm"]: r for r in report.reuse}
    assert reuse["iql"]["reused_stage_steps"] == 400 and reuse["iql"]["share"] == pytest.approx(400 / 1200)
    assert reuse["iql"]["trained"] == 800  # updates count reused steps too
    hopper = next(t for t in report.tasks if t.task == "hopper-medium-v2")
    assert hopper.source_label() == "generated" and tables.GENERATED_NOTE in hopper.notes
    assert _cell(report, "hopper-medium-v2", "bc").paper == {"mean": 52.9, "std": None}
    assert _cell(report, "hopper-medium-v2", "iql").paper == {"mean": 66.3, "std": None}
    md = (out / "report.md").read_text()
    assert results.PAPER_LABEL in md and "52.9 (not comparable: generated data)" in md
    assert "| bc | toy-25_gaussian-far | 3 (2 with cost) | 11.0 | 100.5 |" in md


def test_files_written_and_deterministic(built, tmp_path):
    report, out = built
    names = ["report.md", "report.json", "runs.csv", "aggregate.csv"]
    first = {n: (out / n).read_bytes() for n in names}
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert {
        "aggregate.png",
        "aggregate.csv",
        "profile.png",
        "profile.csv",
        "curves_hopper-medium-v2.png",
        "curves_hopper-medium-v2.csv",
    } <= set(figures)
    assert (out / "figures" / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = first["report.md"].decode()
    assert "](figures/aggregate.png)" in md and "](figures/curves_toy-25_gaussian-far.png)" in md
    again = render.write_report(rep.build_report(out.parent, reps=REPS), tmp_path / "again")
    for n in names:
        assert (again / n).read_bytes() == first[n], n
    data = json.loads(first["report.json"])
    assert data["aggregate"]["algorithms"] == ["bc", "iql"] and data["errors"] == []
    summary = render.format_summary(report)
    assert "hopper-medium-v2" in summary and "IQM" in summary


def test_learning_curve_global_steps_follow_run_order(built):
    report, out = built
    iql = report.curves["hopper-medium-v2"]["iql"]
    # policy runs after warmup (100 steps), although provenance.json lists it first (sorted keys)
    assert [p["step"] for p in iql] == [200, 300]
    assert iql[1]["mean"] == pytest.approx(np.mean([52.0, 64.0])) and iql[1]["n"] == 2
    lines = (out / "figures" / "curves_hopper-medium-v2.csv").read_text().splitlines()
    assert lines[0] == "task,algorithm,global_step,n_seeds,mean,std"
    assert "hopper-medium-v2,iql,300,2,58," in "\n".join(lines)


def test_learning_curve_with_one_evaluation_draws_a_marker():
    ax = Figure().subplots()
    plots.draw_curves(ax, {"bc": [{"step": 1000, "n": 1, "mean": 42.0, "std": None}]})
    (line,) = ax.lines
    assert line.get_marker() not in (None, "", "None", " ") and line.get_markersize() > 0
    assert list(line.get_xdata()) == [1000.0] and list(line.get_ydata()) == [42.0]
    assert not ax.collections[1:]  # one seed: no band, no error bar
    ax = Figure().subplots()
    plots.draw_curves(ax, {"bc": [{"step": 1000, "n": 2, "mean": 42.0, "std": 3.0}]})
    (bar,) = ax.collections[1:]  # after the (zero-width) band: the ± std of the single point
    np.testing.assert_allclose(bar.get_segments()[0], [[1000.0, 39.0], [1000.0, 45.0]])


def test_mixed_data_is_flagged_and_excluded(tmp_path):
    store = make_store(tmp_path)
    prov = store / "runs" / "bc" / "toy-25_gaussian-far" / "seed1" / "provenance.json"
    data = json.loads(prov.read_text())
    data["dataset"]["sha256"] = "d" * 64
    prov.write_text(json.dumps(data))
    report = rep.build_report(store, reps=20)
    assert len(report.errors) == 1 and tables.MIXED_DATA in report.errors[0]
    assert report.aggregate["tasks"] == ["hopper-medium-v2"] and not report.aggregate["ci"]
    out = render.write_report(report, tmp_path / "out")
    md = (out / "report.md").read_text()
    assert "## ERRORS" in md and f"**ERROR: toy-25_gaussian-far: {tables.MIXED_DATA}" in md
    assert "ERROR" in render.format_summary(report)


def test_raw_returns_without_sweep_json(tmp_path):
    store = make_store(tmp_path)
    (store / "sweep.json").unlink()
    shutil.rmtree(store / "runs" / "bc" / "walker2d-medium-v2")
    for path in (store / "runs").glob("*/hopper-medium-v2/seed*/done"):
        done = json.loads(path.read_text())
        done["final_eval"]["score_mean"] = None
        path.write_text(json.dumps(done))
    report = rep.build_report(store, reps=20)
    assert report.sweep["from"].startswith("runs/") and report.sweep["seeds"] == SEEDS
    hopper = next(t for t in report.tasks if t.task == "hopper-medium-v2")
    assert hopper.value_kind == "return" and tables.RETURN_NOTE in hopper.notes
    assert _cell(report, "hopper-medium-v2", "bc").final["mean"] == pytest.approx(1052.0)
    assert _cell(report, "hopper-medium-v2", "bc").paper is None  # returns are not comparable with scores
    assert report.aggregate["tasks"] == ["toy-25_gaussian-far"]


def _toy_record(record: dict, seed: int, one_action: bool) -> dict:
    """An evaluation record as a toy evaluation writes it: its score label and sample metrics."""
    protocol = record["protocol"] | {"score": TOY_SCORE, "deterministic": one_action}
    samples = {"in_support": 0.5, "modes_hit": 4 + seed, "top_mode_share": 0.25}
    return record | {"protocol": protocol, "samples": samples, "return_std": 0.0 if one_action else 3.0}


def _toy_store(root: Path) -> Path:
    """The store with every toy run evaluated once, as toy evaluations record it; bc's episodes all
    identical (one action)."""
    store = make_store(root)
    for run in (store / "runs").glob("*/toy-25_gaussian-far/seed*"):
        seed, one_action = int(run.name.removeprefix("seed")), run.parent.parent.name == "bc"
        evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
        (run / "eval.jsonl").write_text(
            "".join(json.dumps(_toy_record(e, seed, one_action)) + "\n" for e in evals[-1:])
        )
        provenance = json.loads((run / "provenance.json").read_text())
        provenance["protocol"] = _toy_record({"protocol": provenance["protocol"]}, seed, one_action)["protocol"]
        (run / "provenance.json").write_text(json.dumps(provenance))
        if (run / "done").is_file():
            done = json.loads((run / "done").read_text())
            done["final_eval"] = _toy_record(done["final_eval"], seed, one_action)
            (run / "done").write_text(json.dumps(done))
    return store


def test_one_evaluation_per_run_shows_no_best_and_identical_episodes_are_one_action(tmp_path):
    report = rep.build_report(_toy_store(tmp_path), reps=20)
    toy = next(t for t in report.tasks if t.task == "toy-25_gaussian-far")
    bc, iql = _cell(report, toy.task, "bc"), _cell(report, toy.task, "iql")
    assert bc.best is None and iql.best is None  # best = final with one evaluation: not information
    assert bc.one_action and not iql.one_action
    assert bc.samples["modes_hit"] == pytest.approx({"mean": 5.0, "std": 1.0, "n": 3})
    assert toy.score_label == TOY_SCORE and plots.value_label(toy) == TOY_SCORE
    md = render.render_markdown(report, {})
    section = md.split("### toy-25_gaussian-far")[1].split("###")[0]
    assert f"Value: score ({TOY_SCORE})" in section and "D4RL" not in section
    assert "| algorithm | final | in-support | modes hit | top-mode share | seeds |" in section
    assert render.BEST_DROPPED in section and render.ONE_ACTION_NOTE in section
    assert "| bc | 85.0 ± 5.0 (one action) | 0.500 ± 0.000 | 5.0 ± 1.0 | 0.250 ± 0.000 | 3/3 |" in section
    assert "| iql | 90.5 ± 9.2 | 0.500 ± 0.000 | 4.5 ± 0.7 |" in section
    hopper = next(t for t in report.tasks if t.task == "hopper-medium-v2")  # two evaluations: best kept
    assert "| algorithm | final | best | seeds |" in md.split("### hopper-medium-v2")[1]
    assert render._table_notes(hopper) == [] and plots.value_label(hopper) == "D4RL normalised score x100"
    out = render.write_report(report, tmp_path / "out")
    assert "bc,toy-25_gaussian-far,0,done,score,80,80,1," in (out / "runs.csv").read_text()
