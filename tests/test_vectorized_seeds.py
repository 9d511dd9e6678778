"""``--vectorize-seeds``: seeds trained as one batched model leave the run directories, losses, scores and
weights that training each seed alone leaves (update-level equality is a conformance check)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from offrl_zoo.cli import main
from offrl_zoo.train import RunRequest, train
from offrl_zoo.train.run import load_run
from offrl_zoo.train.run_seeds import train_seed_batch

TASK = "toy-25_gaussian-near"
TINY = {
    "td3bc": ["batch_size=64", "hidden=[32,32]"],
    "dtql": [
        "batch_size=64",
        "pretrain_steps=20",
        "score_hidden=16",
        "critic_hidden=16",
        "actor_hidden=[16]",
        "candidates=8",
    ],
}
RTOL = 1e-3


def request(algorithm: str, seed: int, steps: int) -> RunRequest:
    return RunRequest(
        algorithm,
        task=TASK,
        seed=seed,
        steps=steps,
        eval_every=steps // 2,
        eval_episodes=10,
        log_every=10,
        checkpoint_every=steps // 2,
        overrides=TINY[algorithm],
    )


def records(run_dir, name: str) -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def assert_same_values(x: dict, y: dict, where: tuple) -> None:
    """Floats (and lists of floats) to the batched-arithmetic tolerance, everything else exactly."""
    for key, value in y.items():
        if key in ("time", "updates_per_s"):
            continue
        if isinstance(value, dict):  # e.g. the toy evaluation's sample metrics
            assert_same_values(x[key], value, (*where, key))
        elif isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float)):
            assert x[key] == pytest.approx(value, rel=RTOL, abs=1e-4), (*where, key)
        else:
            assert x[key] == value, (*where, key)


def assert_same_run(vectorized, alone) -> None:
    for name in ("metrics.jsonl", "eval.jsonl"):
        a, b = records(vectorized, name), records(alone, name)
        assert len(a) == len(b), name
        for x, y in zip(a, b, strict=True):
            assert_same_values(x, y, (name, y.get("step")))
    algo_a, _, _ = load_run(vectorized)
    algo_b, _, _ = load_run(alone)
    for (key, p), (_, q) in zip(algo_a.named_parameters(), algo_b.named_parameters(), strict=True):
        assert (p - q).abs().mean() < 1e-5, key


@pytest.mark.parametrize(("algorithm", "steps"), [("td3bc", 200), ("dtql", 30)])
def test_seed_batch_equals_seeds_alone(tmp_path, algorithm, steps):
    """With the seeds evaluated in one batched ``act`` per env step (the CUDA default; the toy's sampled
    evaluation, so each seed's draws count too)."""
    requests = [request(algorithm, seed, steps) for seed in (0, 1, 2)]
    dirs = train_seed_batch(requests, out=tmp_path / "batched", progress=False, batched_eval=True)
    for req, run_dir in zip(requests, dirs, strict=True):
        alone = train(req, out=tmp_path / "alone", progress=False)
        assert_same_run(run_dir, alone)
        provenance = json.loads((run_dir / "provenance.json").read_text())
        assert provenance["vectorized_seeds"] == [0, 1, 2]


def test_finished_seeds_are_skipped_and_the_rest_batched(tmp_path):
    done = train(request("td3bc", 0, 40), out=tmp_path, progress=False)
    before = (done / "metrics.jsonl").read_text()
    dirs = train_seed_batch([request("td3bc", s, 40) for s in (0, 1)], out=tmp_path, progress=False)
    assert (done / "metrics.jsonl").read_text() == before
    assert json.loads((dirs[1] / "provenance.json").read_text())["vectorized_seeds"] == [1]
    assert_same_run(dirs[1], train(request("td3bc", 1, 40), out=tmp_path / "alone", progress=False))


def test_runs_differing_in_more_than_the_seed_are_refused(tmp_path):
    a = request("td3bc", 0, 20)
    b = dataclasses.replace(request("td3bc", 1, 20), steps=30)
    with pytest.raises(Exception, match="differ in their seed only"):
        train_seed_batch([a, b], out=tmp_path, progress=False)


def test_cli_trains_seeds_vectorized(tmp_path, capsys):
    args = [
        "train",
        "td3bc",
        "--task",
        TASK,
        "--seeds",
        "2",
        "--vectorize-seeds",
        "--steps",
        "20",
        "--out",
        str(tmp_path),
        "--eval-every",
        "20",
        "--eval-episodes",
        "5",
        "--no-progress",
        *TINY["td3bc"],
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "seed0" in out and "seed1" in out
    assert torch.load(tmp_path / "td3bc" / TASK / "seed1" / "checkpoint.pt", weights_only=True)["next_step"] == 0


def test_a_diverging_seed_leaves_the_batch_and_the_others_finish(tmp_path, monkeypatch):
    from offrl_zoo.errors import TrainingDiverged
    from offrl_zoo.train.trainer import Trainer

    after_step = Trainer.after_step

    def diverge_seed_1(self, run, step, metrics):
        if self.settings.seed == 1 and step == 25:
            raise TrainingDiverged("critic_loss became nan (test)")
        after_step(self, run, step, metrics)

    monkeypatch.setattr(Trainer, "after_step", diverge_seed_1)
    requests = [request("td3bc", seed, 60) for seed in (0, 1, 2)]
    with pytest.raises(TrainingDiverged, match="seed 1"):
        train_seed_batch(requests, out=tmp_path / "batched", progress=False)
    dirs = [tmp_path / "batched" / "td3bc" / TASK / f"seed{s}" for s in (0, 1, 2)]
    assert json.loads((dirs[1] / "failed").read_text())["kind"] == "diverged"
    monkeypatch.setattr(Trainer, "after_step", after_step)
    for seed in (0, 2):  # finished, and as they would have alone
        assert (dirs[seed] / "done").is_file() and not (dirs[seed] / "failed").exists()
        assert_same_run(dirs[seed], train(requests[seed], out=tmp_path / "alone", progress=False))


def test_batched_act_leaves_out_a_seed_with_non_finite_weights():
    """A seed about to be found diverged has NaN weights: batched evaluation acts for the others only, and
    each of them acts as alone."""
    from offrl_zoo import registry
    from offrl_zoo.testing import make
    from offrl_zoo.train.seed_batch_model import SeedBatch

    algos = [make(registry.get("iql"), seed) for seed in range(3)]
    batch = SeedBatch(algos, [torch.Generator() for _ in algos])
    with torch.no_grad():
        next(iter(batch.params.values()))[1].fill_(float("nan"))
    assert batch.finite() == [True, False, True]
    obs = torch.randn(2, 4, algos[0].spec.obs_dim)
    actions = batch.act(obs, False, [torch.Generator().manual_seed(5) for _ in range(2)], seeds=[0, 2])
    for row, k in enumerate((0, 2)):
        torch.manual_seed(5)
        torch.testing.assert_close(actions[row], batch.unstack(k).act(obs[row], False), rtol=1e-4, atol=1e-5)


def test_a_fast_seed_batch_keeps_what_a_captured_step_reads_in_place():
    """On CUDA the fast path captures the batched update after a few real steps and replays it on the tensors it
    read then: weights, buffers, optimiser states and learning rates must stay where they were, the schedules
    filling the learning rates in place; the seeds' generators are registered with each graph."""
    from offrl_zoo import registry, testing
    from offrl_zoo.graphs import CAPTURE_WARMUP, VariantGraphs
    from offrl_zoo.train.seed_batch_model import SeedBatch

    generators = [torch.Generator().manual_seed(i) for i in range(2)]
    algos = [testing.make(registry.get("iql"), seed=i, fast=True, steps=10) for i in range(2)]
    batch = SeedBatch(algos, generators)
    (stage,) = batch.stages()

    def read_by_a_step() -> dict[str, int]:
        opts = batch.template.optimizers
        tensors = {f"param {k}": p for k, p in batch.params.items()} | {
            f"buffer {k}": b for k, b in batch.buffers.items()
        }
        for key, opt in opts.items():
            tensors |= {f"{key} lr {j}": g["lr"] for j, g in enumerate(opt.param_groups)}
            for j, p in enumerate(p for g in opt.param_groups for p in g["params"]):
                tensors |= {f"{key} state {j} {name}": v for name, v in opt.state[p].items()}
        return {name: t.data_ptr() for name, t in tensors.items()}

    def step(i: int) -> None:
        batch.update(
            stage, torch.stack([testing.random_batch(testing.tiny_spec(), seed=10 * s + i) for s in range(2)]), i
        )

    for i in range(CAPTURE_WARMUP + 1):  # the warm-up steps, then the one a CUDA graph would record
        step(i)
    captured, lr = read_by_a_step(), float(batch.template.optimizers["actor"].param_groups[0]["lr"])
    for i in range(CAPTURE_WARMUP + 1, CAPTURE_WARMUP + 4):
        step(i)
    assert read_by_a_step() == captured
    assert float(batch.template.optimizers["actor"].param_groups[0]["lr"]) < lr  # the cosine schedule moved it
    own_lr = algos[0].optimizers["actor"].param_groups[0]["lr"]
    assert own_lr.data_ptr() != batch.template.optimizers["actor"].param_groups[0]["lr"].data_ptr()
    graphs = batch._updates[stage.name]
    assert isinstance(graphs, VariantGraphs) and graphs.generators is generators


def test_a_captured_seed_batch_act_draws_from_each_callers_stream(monkeypatch):
    """On CUDA the batched ``act`` is a graph that draws from generators of its own, registered at capture: the
    callers' states go in before each call and come back after it, so the actions and the callers' streams are
    those of the uncaptured call. Checked on the CPU with the capture replaced by a plain call."""
    from offrl_zoo import registry, testing
    from offrl_zoo.train import seed_batch_model

    made = []

    class PlainCall:  # CapturedStep's interface, running ``fn`` each time
        def __init__(self, fn, generators=()):
            self.fn, self.generators = fn, generators
            made.append(self)

        def __call__(self, td):
            return self.fn(td)

    monkeypatch.setattr(seed_batch_model, "CapturedStep", PlainCall)
    algos = [testing.make(registry.get("iql"), seed=i) for i in range(3)]
    batch = seed_batch_model.SeedBatch(algos, [torch.Generator().manual_seed(i) for i in range(3)])
    obs = torch.randn(2, 4, testing.OBS_DIM, generator=torch.Generator().manual_seed(5))
    results = {}
    for captured in (False, True):
        monkeypatch.setattr(batch.template, "captures", lambda captured=captured: captured)
        streams = [torch.Generator().manual_seed(40 + i) for i in range(2)]
        actions = [batch.act(obs, False, streams, seeds=[2, 0]) for _ in range(3)]  # sampled actions
        results[captured] = actions, [s.get_state() for s in streams]
    for want, got in zip(results[False][0], results[True][0], strict=True):
        assert torch.equal(got, want)
    for want, got in zip(results[False][1], results[True][1], strict=True):
        assert torch.equal(got, want)
    assert len(made) == 1 and len(made[0].generators) == 2  # one graph for the three calls, a generator per seed
