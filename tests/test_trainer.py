"""Trainer: run directory contents, exact resume after an interruption, shortening, divergence."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch import nn

from offrl_zoo import registry
from offrl_zoo.config import ConfigError
from offrl_zoo.errors import CheckpointError
from offrl_zoo.io import save_torch
from offrl_zoo.train import RunRequest, Trainer, load_run, train
from offrl_zoo.train.cost import processor
from offrl_zoo.train.run import SESSION_KEYS
from offrl_zoo.train.trainer import rng_state

TASK = "toy-25_gaussian-near"
VOLATILE = {"time", "updates_per_s"}


def request(algorithm: str, steps: int = 40, **kw) -> RunRequest:
    defaults = dict(
        task=TASK,
        steps=steps,
        log_every=1,
        checkpoint_every=10,
        eval_every=20,
        eval_episodes=20,
        overrides=["hidden=[32,32]"],
    )
    defaults.update(kw)
    return RunRequest(algorithm, **defaults)


def stable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_directory_contents(tmp_path):
    run_dir = train(request("bc"), run_dir=tmp_path / "run", progress=False)
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "provenance.json", "metrics.jsonl", "eval.jsonl", "checkpoint.pt", "done"} <= names
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["algorithm_config"]["hidden"] == [32, 32]
    assert config["config_sources"]["hidden"] == "command line"
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["shortened"] is True
    assert provenance["stages"]["train"] == {
        "planned_steps": 1_000_000,
        "run_steps": 40,
        "batch_size": 256,
        "sampling": "uniform",
        "draw": "buffer",
    }
    assert provenance["dataset"]["source"] == "toy" and len(provenance["dataset"]["sha256"]) == 64
    assert provenance["protocol"]["episodes"] == 20
    evals = read_jsonl(run_dir / "eval.jsonl")
    assert [e["step"] for e in evals] == [20, 40]
    assert "score_mean" in evals[-1] and len(evals[-1]["returns"]) == 20
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 41))
    done = json.loads((run_dir / "done").read_text())
    assert done["final_eval"]["step"] == 40
    cost = done["cost"]
    assert cost["updates"] == 40 and cost["reused_stage_steps"] == 0 and cost["updates_per_s"] > 0
    assert cost["nfe_per_action"] == 1 and cost["act_ms_1"] > 0 and cost["device"] == "cpu"
    assert cost["processor"] == provenance["processor"] == processor("cpu")
    assert processor("cpu").endswith(f"({torch.backends.cpu.get_cpu_capability()})")
    assert cost["peak_rss_mb"] > 0


def crash_after_step_20(monkeypatch, req: RunRequest, run_dir) -> None:
    """Train ``req`` into ``run_dir`` and crash at update 26: after the step-20 checkpoint, before step 30."""
    cls = registry.get(req.algorithm)
    original = cls.update
    calls = {"n": 0}

    def crashing_update(self, batch, step):
        calls["n"] += 1
        if calls["n"] == 26:
            raise KeyboardInterrupt
        return original(self, batch, step)

    with monkeypatch.context() as patch:
        patch.setattr(cls, "update", crashing_update)
        with pytest.raises(KeyboardInterrupt):
            train(req, run_dir=run_dir, progress=False)


def assert_same_run(a, b) -> None:
    for log in ("metrics.jsonl", "eval.jsonl"):
        assert stable(read_jsonl(a / log)) == stable(read_jsonl(b / log)), log
    x = torch.load(a / "checkpoint.pt", weights_only=True)["algorithm"]["modules"]
    y = torch.load(b / "checkpoint.pt", weights_only=True)["algorithm"]["modules"]
    assert all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("name", ["bc", "td3bc", "iql"])
def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch, name):
    reference = train(request(name), run_dir=tmp_path / "reference", progress=False)
    crash_after_step_20(monkeypatch, request(name), tmp_path / "resumed")
    assert_same_run(train(request(name), run_dir=tmp_path / "resumed", progress=False), reference)
    # the interrupted session's environment is kept beside this one's; a run trained in one go has none
    earlier = json.loads((tmp_path / "resumed" / "provenance.json").read_text())["earlier_sessions"]
    assert len(earlier) == 1 and set(earlier[0]) == set(SESSION_KEYS)
    assert json.loads((reference / "provenance.json").read_text())["earlier_sessions"] == []


def old_save_checkpoint(self, stage_index, next_step, sampler_state, elapsed) -> None:
    """Trainer.save_checkpoint as it was when ``Algorithm.state_dict()`` (no arguments) returned the
    training state: the checkpoints of runs started before ``training_state()`` existed."""
    save_torch(
        self.run_dir / "checkpoint.pt",
        {
            "algorithm": {
                "modules": nn.Module.state_dict(self.algo),
                "optimizers": {k: o.state_dict() for k, o in self.algo.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.algo.schedulers.items()},
            },
            "stage_index": stage_index,
            "next_step": next_step,
            "rng": rng_state(self.algo.device),
            "generator": self.generator.get_state(),
            "sampler": sampler_state,
            "metrics_offset": self.metrics_log.offset(),
            "eval_offset": self.eval_log.offset(),
            "elapsed": elapsed,
        },
    )


def test_checkpoint_written_before_training_state_resumes_exactly(tmp_path, monkeypatch):
    """IQL decaying its actor's learning rate over the 40 steps: a lost scheduler state would show."""
    iql = request("iql", overrides=["hidden=[32,32]", "steps=40"])
    reference = train(iql, run_dir=tmp_path / "reference", progress=False)
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save_checkpoint", old_save_checkpoint)
        crash_after_step_20(monkeypatch, iql, tmp_path / "old")
    assert torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)["next_step"] == 20
    assert_same_run(train(iql, run_dir=tmp_path / "old", progress=False), reference)


def test_checkpoint_holding_bare_weights_is_refused(tmp_path):
    run_dir = train(request("bc", steps=10), run_dir=tmp_path / "run", progress=False)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    state["algorithm"] = state["algorithm"]["modules"]  # what nn.Module.state_dict() gives
    torch.save(state, run_dir / "checkpoint.pt")
    (run_dir / "done").unlink()
    with open(run_dir / "metrics.jsonl", "a") as fh:  # a line written after the checkpoint
        fh.write('{"step": 11}\n')
    metrics = (run_dir / "metrics.jsonl").read_text()
    expected = r"checkpoint\.pt: its 'algorithm' entry holds weights only .*needs training_state\(\)"
    for attempt in (lambda: load_run(run_dir), lambda: train(request("bc", steps=10), run_dir=run_dir, progress=False)):
        with pytest.raises(CheckpointError, match=expected) as err:
            attempt()
        assert "\n" not in str(err.value)
    assert (run_dir / "metrics.jsonl").read_text() == metrics  # a refused checkpoint cuts no log back


def test_finished_run_is_skipped_and_other_experiment_refused(tmp_path):
    run_dir = train(request("bc", steps=10), run_dir=tmp_path / "run", progress=False)
    stamp = (run_dir / "done").stat().st_mtime_ns
    train(request("bc", steps=10), run_dir=run_dir, progress=False)
    assert (run_dir / "done").stat().st_mtime_ns == stamp
    (run_dir / "done").unlink()
    with pytest.raises(ConfigError, match="different run"):
        train(request("bc", steps=10, overrides=["lr=0.1", "hidden=[32,32]"]), run_dir=run_dir, progress=False)


def test_load_run_restores_policy(tmp_path):
    run_dir = train(request("td3bc", steps=20), run_dir=tmp_path / "run", progress=False)
    algo, task, record = load_run(run_dir)
    assert task.id == TASK and record["request"]["algorithm"] == "td3bc"
    obs = torch.zeros(4, 1)
    assert algo.act(obs).shape == (4, 2)


def test_run_from_before_a_new_config_field_still_resumes(tmp_path):
    """A field added later counts as its default for old runs; a non-default new value is refused."""
    run_dir = train(request("bc", steps=10), run_dir=tmp_path / "run", progress=False)
    record = yaml.safe_load((run_dir / "config.yaml").read_text())
    del record["algorithm_config"]["holdout_fraction"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(record))
    train(request("bc", steps=10), run_dir=run_dir, progress=False)  # skipped as finished, no error
    (run_dir / "done").unlink()
    with pytest.raises(ConfigError, match="holdout_fraction: '<absent>' != 0.1"):
        train(
            request("bc", steps=10, overrides=["holdout_fraction=0.1", "hidden=[32,32]"]),
            run_dir=run_dir,
            progress=False,
        )


def test_interrupted_fast_run_resumes_exactly(tmp_path, interrupted):
    """The fast path (graph-safe optimisers, the whole update compiled, the LR schedule run after it):
    killed after the step-20 checkpoint and resumed, IQL (cosine actor schedule) logs and ends exactly as
    the uninterrupted run."""
    fast = request("iql", overrides=["hidden=[32,32]", "fast=true"])
    reference = train(fast, run_dir=tmp_path / "reference", progress=False)
    with interrupted(25):
        train(fast, run_dir=tmp_path / "resumed", progress=False)
    assert_same_run(train(fast, run_dir=tmp_path / "resumed", progress=False), reference)
