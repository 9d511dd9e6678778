"""Reference runs (bench/references.py): a fresh DTQL run on the `near` bandit must land inside the shipped
reference band, so a change that breaks learning fails here; a run outside its band is marked in the report.

`near` (the centre is best) because an untrained DTQL policy is wide and scores ≈ 39 there, well below the
trained ≈ 66; on `far` the untrained policy's wide tanh samples already score ≈ 64, as much as a trained one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from offrl_zoo.bench import references
from offrl_zoo.bench.render import _check_status, format_summary, render_markdown
from offrl_zoo.bench.report import build_report
from offrl_zoo.cli import main
from offrl_zoo.errors import ReferenceFileError

# The command the shipped reference dtql__toy-25_gaussian-near__quick.json was made from (seed 0 alone).
TASK = "toy-25_gaussian-near"
SWEEP = ["compare", "dtql", "--tasks", TASK, "--seeds", "1", "--yes", "--no-estimate"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("refs") / "store"
    assert main([*SWEEP, "--out", str(out), "--references", "none"]) == 0
    return out


def test_dtql_learns_as_its_shipped_reference(store):
    """A regression in DTQL's learning (or in the toy data, evaluation or score) moves the score out of the band."""
    (check,) = build_report(store).reference_checks
    assert check["reference"] == f"dtql__{TASK}__quick.json"
    assert check["status"] == "inside", check
    assert check["steps_compared"] == 1


def test_an_untrained_dtql_falls_outside_the_band(store, tmp_path):
    """The check can fail: the same sweep stopped after 5 updates (the budget's other values kept) is marked."""
    untrained = tmp_path / "untrained"
    shutil.copytree(store, untrained, ignore=shutil.ignore_patterns("seed0", "stages", "report"))
    run_dir = untrained / "runs" / "dtql" / TASK / "seed0"
    budget = str(untrained / "budgets" / "dtql.yaml")
    argv = ["train", "dtql", "--task", TASK, "--run-dir", str(run_dir), "--preset", "quick", "--config", budget]
    assert main([*argv, "--steps", "5", "--eval-every", "5", "--no-progress"]) == 0
    _relabel_steps(run_dir, 1000)  # as if it had trained the budget's 1 000 steps
    (check,) = build_report(untrained).reference_checks
    assert check["status"] == "outside" and check["final"] < check["final_band"][0], check


def _relabel_steps(run_dir: Path, step: int) -> None:
    evals = [json.loads(line) | {"step": step} for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    (run_dir / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        m.update(step=step, global_step=step)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))


def _doctor_final_score(run_dir: Path, score: float) -> None:
    """Rewrite a finished run's last evaluation as if it had scored ``score``."""
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    evals[-1]["score_mean"] = score
    (run_dir / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    done = json.loads((run_dir / "done").read_text())
    done["final_eval"]["score_mean"] = score
    (run_dir / "done").write_text(json.dumps(done))


def test_a_run_outside_its_band_is_marked(store, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(store, broken)
    _doctor_final_score(broken / "runs" / "dtql" / TASK / "seed0", 20.0)
    report = build_report(broken)
    (check,) = report.reference_checks
    assert check["status"] == "outside" and check["outside"][0]["step"] == 1000
    (shipped,) = [r for r in references.load_references() if r.file_name() == check["reference"]]
    mean = shipped.curve[-1]["mean"]
    assert check["final_band"] == pytest.approx((mean - 10, mean + 10))  # one seed: its value ± the tolerance
    assert f"OUTSIDE REFERENCE: dtql seed 0 on {TASK}: final 20.0" in format_summary(report)
    assert "## Against the reference runs" in render_markdown(report, {})
    assert build_report(broken, references=False).reference_checks == []


def test_make_references_round_trip_and_matching_rules(store, tmp_path, capsys):
    folder = tmp_path / "mine"
    assert main(["reference", "make", str(store), "--out", str(folder), "--tolerance", "0"]) == 0
    (ref,) = references.load_references(folder)
    assert (ref.algorithm, ref.task, ref.budget, ref.seeds, ref.value) == (
        "dtql",
        TASK,
        "quick",
        [0],
        "score",
    )
    assert ref.band(1000) == (ref.curve[0]["mean"], ref.curve[0]["mean"])  # one seed, no tolerance: the value
    means = [p["mean"] for p in ref.curve]  # the jitter of a reference made from runs: each seed's own curve
    assert ref.jitter == max((abs(b - a) for a, b in zip(means, means[1:], strict=False)), default=0.0)
    assert ref.band(999) is None
    (check,) = build_report(store, references=folder).reference_checks
    assert check["status"] == "inside"  # the very run it was made from
    other = tmp_path / "other-settings"
    shutil.copytree(store, other)
    sweep = json.loads((other / "sweep.json").read_text())
    sweep["run_settings"]["eval_episodes"] = 7  # evaluated otherwise: not comparable, so not checked
    (other / "sweep.json").write_text(json.dumps(sweep))
    assert build_report(other, references=folder).reference_checks == []
    # several stores pool their seeds (tests below); the same store twice repeats its seeds
    assert main(["reference", "make", str(store), str(store), "--out", str(tmp_path / "twice")]) != 0
    assert "seed(s) [0] in several stores" in capsys.readouterr().err
    assert main(["reference", "make", str(store), str(store), str(store), "--out", str(tmp_path / "x"),
                 "--code-version", "a", "--code-version", "b"]) != 0  # fmt: skip
    assert "--code-version given 2 times for 3 stores" in capsys.readouterr().err
    assert not (tmp_path / "twice").exists() and not (tmp_path / "x").exists()


def test_bad_reference_files_are_named(tmp_path):
    (tmp_path / "x.json").write_text('{"algorithm": "dtql"}')
    with pytest.raises(ReferenceFileError, match=r"x\.json: not a reference file"):
        references.load_references(tmp_path)
    with pytest.raises(ReferenceFileError, match="no such folder"):
        references.load_references(tmp_path / "missing")
    with pytest.raises(ReferenceFileError, match="no sweep.json"):
        references.make_references(tmp_path)


def test_references_from_a_saved_report_match_those_from_the_runs(store, tmp_path):
    """A store saved without its run files still has its report; references made from it carry the same curve,
    the code version given on the command line, and are matched whether or not a run took the fast path."""
    from offrl_zoo.bench.render import write_report

    saved = tmp_path / "saved"
    shutil.copytree(store, saved, ignore=shutil.ignore_patterns("runs", "stages"))
    write_report(build_report(store, references=False), saved / "report")
    folder = tmp_path / "from-report"
    assert main(["reference", "make", str(saved), "--out", str(folder), "--code-version", "abc123"]) == 0
    (from_report,) = references.load_references(folder)
    (from_runs,) = references.make_references(store)
    assert from_report.key() == from_runs.key() and from_report.seeds == from_runs.seeds == [0]
    for a, b in zip(from_report.curve, from_runs.curve, strict=True):  # the report rounds to 6 decimals
        assert (a["step"], a["n"]) == (b["step"], b["n"])
        assert [a["mean"], a["min"], a["max"]] == pytest.approx([b["mean"], b["min"], b["max"]], abs=1e-6)
    assert from_report.code == {"offrl_zoo": [], "git_sha": ["abc123"]}
    fast = tmp_path / "fast"
    shutil.copytree(store, fast)
    sweep = json.loads((fast / "sweep.json").read_text())
    sweep["overrides"] = ["fast=true", "cpu_bf16_matmul=true"]
    (fast / "sweep.json").write_text(json.dumps(sweep))
    (check,) = build_report(fast, references=folder).reference_checks
    assert check["status"] == "inside"
    shutil.rmtree(saved / "report")
    with pytest.raises(ReferenceFileError, match="neither runs/ nor report/report.json"):
        references.make_references(saved)


def _set_data(run_dir: Path, sha256: str, recipe: dict | None) -> None:
    """Rewrite a run's provenance as if it had trained on a generated file of ``recipe`` hashing to ``sha256``."""
    provenance = json.loads((run_dir / "provenance.json").read_text())
    provenance["dataset"].update(sha256=sha256, source="generated", extra={"recipe": recipe})
    (run_dir / "provenance.json").write_text(json.dumps(provenance))


def test_generated_data_of_the_same_recipe_but_other_bytes_is_checked_and_says_so(store, tmp_path):
    """`data make` on another CPU type writes other bytes from the same recipe: the reference of that recipe
    is used, and the check says the data match by recipe; another recipe is not checked."""
    recipe = {"task": "hopper-medium-v2", "seed": 0, "size": 1000, "policies": {"medium": "abc"}}
    here = tmp_path / "made-here"
    shutil.copytree(store, here, ignore=shutil.ignore_patterns("report"))
    run_dir = here / "runs" / "dtql" / TASK / "seed0"
    _set_data(run_dir, "a" * 64, recipe)
    folder = tmp_path / "refs"
    assert main(["reference", "make", str(here), "--out", str(folder)]) == 0
    (ref,) = references.load_references(folder)
    assert ref.data_recipe == recipe
    (check,) = build_report(here, references=folder).reference_checks
    assert (check["data"], check["status"]) == ("same file", "inside")
    _set_data(run_dir, "b" * 64, dict(reversed(recipe.items())))  # other bytes; key order does not matter
    report = build_report(here, references=folder)
    (check,) = report.reference_checks
    assert (check["data"], check["status"], check["reference_sha256"]) == ("same recipe", "inside", "a" * 64)
    assert "1 on data of the reference's recipe" in format_summary(report)
    assert "same recipe (reference data aaaaaaaaaaaa)" in render_markdown(report, {})
    _set_data(run_dir, "b" * 64, recipe | {"seed": 1})
    assert build_report(here, references=folder).reference_checks == []
    _set_data(run_dir, "b" * 64, None)  # a user's own file: only its hash can match
    assert build_report(here, references=folder).reference_checks == []


def test_a_one_seed_reference_widens_its_band_by_its_own_jitter():
    """One seed says nothing of the spread over seeds: the largest change between consecutive evaluations
    stands in for 2·std, so an oscillating curve's dips at other steps stay inside."""
    curve = [{"step": s, "n": 1, "mean": m, "std": None, "min": m, "max": m} for s, m in [(1, 90.0), (2, 40.0)]]
    ref = references.Reference(
        algorithm="a", task="t", budget="b", overrides=[], run_settings={}, sha256="x", value="score",
        seeds=[0], curve=curve, tolerance=10.0, code={}, source="", jitter=references._jitter([[90.0, 40.0]]),
    )  # fmt: skip
    assert ref.jitter == 50.0
    assert ref.band(1) == (30.0, 150.0) and ref.band(2) == (-20.0, 100.0)


def _part(seeds: list[int], values_per_step: dict[int, list[float]], source: str, **changes) -> references.Reference:
    curve = [{"step": step, **references._curve_stats(v)} for step, v in values_per_step.items()]
    fields = dict(
        algorithm="a", task="t", budget="b", overrides=[], run_settings={"eval_episodes": 10}, sha256="x",
        value="score", seeds=seeds, curve=curve, tolerance=10.0, code={"git_sha": [source]}, source=source,
    )  # fmt: skip
    return references.Reference(**(fields | changes))


def test_the_seeds_of_several_stores_pool_into_one_reference_exactly():
    """Three seeds in one store, two in another, one from a report (min and max unknown): each step's n, mean
    and std are those of all the seeds' values; steps not every seed has are dropped."""
    three = _part([0, 1, 2], {1: [10.0, 12.0, 17.0], 2: [20.0, 25.0, 21.0]}, "s1")
    two = _part([3, 4], {1: [30.0, 5.0], 2: [40.0, 44.0], 3: [1.0, 2.0]}, "s2")
    (pooled,) = references.pool_references([three, two])
    assert pooled.seeds == [0, 1, 2, 3, 4] and [p["step"] for p in pooled.curve] == [1, 2]
    every_seed = ([10.0, 12.0, 17.0, 30.0, 5.0], [20.0, 25.0, 21.0, 40.0, 44.0])
    for point, values in zip(pooled.curve, every_seed, strict=True):
        want = references._curve_stats(values)
        assert {k: pytest.approx(v) for k, v in point.items() if k != "step"} == want
    assert pooled.code["git_sha"] == ["s1", "s2"] and pooled.jitter == 0.0
    from_report = _part([5, 6], {1: [0.0, 2.0]}, "r")
    from_report.curve[0].update(min=None, max=None)
    (pooled,) = references.pool_references([three, from_report])
    assert pooled.curve[0]["min"] is None and pooled.curve[0]["mean"] == pytest.approx(41 / 5)
    assert len(references.pool_references([three, _part([3], {1: [1.0]}, "other", sha256="y")])) == 2


def test_pooling_refuses_repeated_seeds_other_evaluations_and_clashing_files(tmp_path):
    three = _part([0, 1, 2], {1: [10.0, 12.0, 17.0]}, "s1")
    with pytest.raises(ReferenceFileError, match=r"seed\(s\) \[1\] in several stores"):
        references.pool_references([three, _part([1, 3], {1: [1.0, 2.0]}, "s2")])
    with pytest.raises(ReferenceFileError, match="cannot pool runs evaluated differently"):
        references.pool_references([three, _part([3], {1: [1.0]}, "s2", run_settings={"eval_episodes": 5})])
    with pytest.raises(ReferenceFileError, match="differ in their data or overrides"):
        references.write_references([three, _part([3], {1: [1.0]}, "s2", sha256="y")], tmp_path / "out")


def test_seeds_that_agree_at_a_step_keep_the_band_of_their_oscillation():
    """Two seeds that both swing by 50 between evaluations but agree at one step: std there is 0, and the
    band still spans the swing (max(2·std, jitter)). Pooling keeps the largest jitter of its parts."""
    swinging = _part([0], {1: [90.0], 2: [40.0]}, "s1", jitter=50.0)
    (pooled,) = references.pool_references([swinging, _part([1], {1: [40.0], 2: [40.0]}, "s2")])
    assert pooled.curve[1]["std"] == 0.0 and pooled.jitter == 50.0
    assert pooled.band(2) == (-20.0, 100.0)


# TD3+BC on walker2d, 25 k … 300 k steps: seed 1 (AMD data draw) and seed 2 (Intel draw), from the saved stores
# benchmarks/results/campaign/gym-medium-300000-seed1 and -seed2 (docs/results.md).
SEED1 = [54.7, 14.8, 9.3, 58.0, 68.4, 72.0, 79.5, 17.0, 76.1, 0.9, 16.9, 75.9]
SEED2 = [36.4, 59.1, 68.4, 75.8, 48.6, 53.1, 52.3, 63.4, 79.3, 48.3, 69.1, 72.3]


def test_a_steadily_low_run_that_every_step_band_passes_is_outside_in_its_late_mean():
    """The shipped one-seed TD3+BC walker2d reference swings by 31.6 between evaluations, so its step bands are
    ±41.6 wide and a run stuck at 40 passes all twelve. Its late mean (the last 6 evaluations) does not; the
    two real later seeds, one of which collapses at 5 of its 12 evaluations, pass it (their own swings widen
    their band)."""
    (ref,) = [r for r in references.load_references() if r.file_name() == "td3bc__walker2d-medium-v2__300000.json"]
    assert ref.late is None and ref.seeds == [0]  # a file made before late summaries: derived from the curve
    steps = [p["step"] for p in ref.curve]
    assert ref.late_summary()["steps"] == steps[6:]
    stuck = references._late_check(ref, dict.fromkeys(steps, 40.0))
    assert all(ref.band(s)[0] <= 40.0 <= ref.band(s)[1] for s in steps)
    assert stuck["status"] == "outside" and stuck["band"][0] > 55, stuck
    for curve in (SEED1, SEED2):
        check = references._late_check(ref, dict(zip(steps, curve, strict=True)))
        assert check["status"] == "inside" and check["steps"] == 6, check
    assert references._late_check(ref, dict(zip(steps[:-1], SEED2, strict=False))) is None  # a step missing
    assert references._status(12, [], stuck) == "outside" and references._status(0, [], stuck) == "not compared"
    check = {"status": "outside", "outside": [{"step": steps[0]}], "late": stuck}
    assert _check_status(check) == "outside at 1 step and in its late mean"
    assert _check_status(check | {"outside": []}) == "outside in its late mean"
    assert _check_status({"status": "inside", "outside": []}) == "inside"  # report.json from before late means


def test_late_summaries_pool_per_seed_and_the_band_takes_the_spread_over_seeds():
    """Pooled references keep each seed's late mean; with seeds that disagree, their spread sets the band, and
    a curve too short for three late evaluations has no late check."""
    steps = range(1, 7)
    calm = _part([0], {s: [70.0 + s % 2] for s in steps}, "s1")
    other = _part([1], {s: [50.0 + s % 2] for s in steps}, "s2")
    (pooled,) = references.pool_references([calm, other])
    late = pooled.late_summary()
    assert late["steps"] == [4, 5, 6] and [s["mean"] for s in late["per_seed"]] == pytest.approx(
        [70 + 1 / 3, 50 + 1 / 3]
    )
    low, high = pooled.late_band(run_std=0.0)
    assert (high - low) / 2 == pytest.approx(2 * 200**0.5 + 10.0)  # std of the seeds' late means: √200
    assert (calm.late_band(0.0)[1] - calm.late_band(0.0)[0]) / 2 == pytest.approx(2 * (1 / 3 / 3) ** 0.5 + 10)
    assert _part([0], {s: [1.0] for s in range(1, 6)}, "short").late_summary() is None
    assert references.pool_references([calm, _part([1], {s: [1.0] for s in range(1, 9)}, "s3")])[0].late is None
