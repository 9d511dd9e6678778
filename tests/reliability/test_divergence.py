"""Training that goes wrong: a NaN/Inf loss or weight stops the run naming the step, the term and the
last good checkpoint, which is kept; the run is marked failed and a report shows it as failed."""

from __future__ import annotations

import json

import pytest
import torch

from offrl_zoo import registry
from offrl_zoo.bench.render import write_report
from offrl_zoo.bench.report import build_report
from offrl_zoo.bench.sweep import plan, record_sweep
from offrl_zoo.errors import TrainingDiverged
from offrl_zoo.io import load_torch
from offrl_zoo.train import RunRequest, train

TASK = "toy-25_gaussian-near"


def request(**kw) -> RunRequest:
    base = dict(
        task=TASK,
        steps=40,
        log_every=5,
        checkpoint_every=10,
        eval_every=40,
        eval_episodes=10,
        overrides=["hidden=[32,32]"],
    )
    return RunRequest("bc", **(base | kw))


def sabotage(monkeypatch, after: int, where: str) -> None:
    """From update call ``after`` on, return a NaN loss (``loss``) or silently break a weight (``weights``)."""
    cls = registry.get("bc")
    original, calls = cls.update, {"n": 0}

    def update(self, batch, step):
        calls["n"] += 1
        metrics = original(self, batch, step)
        if calls["n"] >= after:
            if where == "loss":
                metrics["actor_loss"] = metrics["actor_loss"] * float("nan")
            else:
                with torch.no_grad():
                    next(self.parameters()).fill_(float("inf"))
        return metrics

    monkeypatch.setattr(cls, "update", update)


def finite_checkpoint(run_dir) -> int:
    state = load_torch(run_dir / "checkpoint.pt")
    assert all(bool(t.isfinite().all()) for t in state["algorithm"]["modules"].values() if t.is_floating_point())
    return state["next_step"]


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    sabotage(monkeypatch, after=23, where="loss")
    with pytest.raises(
        TrainingDiverged,
        match=r"stage 'train', steps 21\.\.25: actor_loss became nan; "
        r"last good checkpoint kept: .*checkpoint\.pt",
    ):
        train(request(), run_dir=tmp_path / "r", progress=False)
    assert finite_checkpoint(tmp_path / "r") == 20
    failed = json.loads((tmp_path / "r" / "failed").read_text())
    assert failed["kind"] == "diverged" and "actor_loss" in failed["error"]
    assert not (tmp_path / "r" / "done").exists()


def test_broken_weights_never_overwrite_the_last_good_checkpoint(tmp_path, monkeypatch):
    sabotage(monkeypatch, after=30, where="weights")  # the loss of step 30 is computed before the step: finite
    with pytest.raises(TrainingDiverged, match=r"step 30: weights '.*' hold NaN/Inf; last good checkpoint kept"):
        train(request(log_every=10), run_dir=tmp_path / "r", progress=False)
    assert finite_checkpoint(tmp_path / "r") == 20


def test_divergence_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    sabotage(monkeypatch, after=1, where="loss")  # an absurd lr that diverges at once is refused up front now
    with pytest.raises(TrainingDiverged, match=r"became (nan|inf); no checkpoint yet"):
        train(request(log_every=1), run_dir=tmp_path / "r", progress=False)


def test_a_report_shows_a_diverged_run_as_failed_never_as_a_score(tmp_path, monkeypatch):
    store = tmp_path / "store"
    sweep = plan(["bc"], None, [TASK], 2, "40", ["hidden=[32,32]"])
    record_sweep(store, sweep)
    good, bad = sweep.runs
    train(request(seed=good.seed), run_dir=good.run_dir(store), progress=False)
    sabotage(monkeypatch, after=15, where="loss")
    with pytest.raises(TrainingDiverged):
        train(request(seed=bad.seed), run_dir=bad.run_dir(store), progress=False)
    report = build_report(store, reps=50)
    assert {r.seed: r.status for r in report.runs} == {good.seed: "done", bad.seed: "failed"}
    write_report(report)
    table = (store / "report" / "report.md").read_text()
    assert "1/2, failed (1)" in table
