"""``draw``: who draws the training batches. ``graph`` (the update draws its own, so the fast path compiles and
captures the draw with the step) gives the same run fast and eager and resumes exactly; ``auto`` is the buffer
off CUDA; the rule splits the stage cache; stages and seed batches it cannot serve are refused up front."""

from __future__ import annotations

import json

import pytest
import torch

from offrl_zoo import registry
from offrl_zoo.config import ConfigError
from offrl_zoo.data.buffer import NO_BATCH, UniformDraw
from offrl_zoo.data.dataset import Dataset, Provenance
from offrl_zoo.testing import random_batch, tiny_spec
from offrl_zoo.train import RunRequest, Trainer, train
from offrl_zoo.train.run_seeds import train_seed_batch
from offrl_zoo.train.stage_cache import stage_identity

TASK = "toy-25_gaussian-near"
# fast against eager: the rounding of functional Adam and compiled code (tests/test_fast_path.py)
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5


def request(
    name: str, *overrides: str, steps: int = 30, seed: int = 0, tiny: tuple = ("hidden=[32,32]",)
) -> RunRequest:
    return RunRequest(
        name,
        task=TASK,
        seed=seed,
        steps=steps,
        log_every=1,
        checkpoint_every=10,
        eval_every=10**6,
        eval_episodes=10,
        overrides=[*tiny, "batch_size=64", *overrides],
    )


def losses(run_dir) -> list[dict]:
    """The logged metrics of each step, without the timings and the stage name."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    drop = ("time", "updates_per_s", "stage")
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def test_uniform_draw_takes_the_rows_of_the_default_generator():
    data = random_batch(tiny_spec(), 50, seed=0)
    torch.manual_seed(5)
    batch = UniformDraw(data, 8)()
    torch.manual_seed(5)
    rows = torch.randint(50, (8,))
    assert (batch == data[rows]).all()
    assert set(batch.keys(True, True)) == set(data.keys(True, True))
    with pytest.raises(ValueError, match="batch_size=51 is larger than the dataset"):
        UniformDraw(data, 51)


@pytest.mark.parametrize("name", ["td3bc", "dtql"])  # a step variant (the delayed actor); two stages
def test_update_drawing_its_own_batch_compiles_whole_and_matches_eager(name):
    """Compiled as one graph with its draw (fullgraph: a host sync or a graph break would fail here), the update
    draws the rows the eager one draws and gives its losses."""
    data = random_batch(tiny_spec(), 300, seed=1)
    cls = registry.get(name)
    runs = {}
    for fast in (True, False):
        torch.manual_seed(0)
        algo = cls(tiny_spec(), cls.Config(fast=fast, draw="graph"))
        torch.manual_seed(1)
        runs[fast] = [
            {k: float(v) for k, v in algo.compiled_update(stage, draw=UniformDraw(data, 32))(NO_BATCH, step).items()}
            for stage in algo.stages()
            for step in range(4)
        ]
    for fast, eager in zip(runs[True], runs[False], strict=True):
        assert fast == pytest.approx(eager, rel=LOSS_RTOL, abs=LOSS_ATOL)


def test_graph_draw_is_the_same_run_fast_and_eager_and_not_the_buffers(tmp_path):
    fast = losses(train(request("td3bc", "draw=graph", "fast=true"), run_dir=tmp_path / "fast", progress=False))
    eager = losses(train(request("td3bc", "draw=graph"), run_dir=tmp_path / "eager", progress=False))
    buffer = losses(train(request("td3bc", "draw=buffer"), run_dir=tmp_path / "buffer", progress=False))
    for a, b in zip(fast, eager, strict=True):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-4)  # 30 steps of rounding, as fast/eager runs differ
    assert [m["critic_loss"] for m in eager] != [m["critic_loss"] for m in buffer]  # other rows were drawn


def test_auto_draw_off_cuda_is_the_buffer(tmp_path):
    auto = train(request("iql", "draw=auto", "fast=true"), run_dir=tmp_path / "auto", progress=False)
    buffer = train(request("iql", "draw=buffer", "fast=true"), run_dir=tmp_path / "buffer", progress=False)
    assert losses(auto) == losses(buffer)


@pytest.mark.parametrize("fast", [False, True])
def test_graph_draw_resumes_exactly(tmp_path, monkeypatch, fast):
    """Killed after the step-20 checkpoint: the draw's state is the default generator's, which every
    checkpoint holds, so the resumed run draws the batches the uninterrupted one drew."""
    req = request("iql", "draw=graph", f"fast={str(fast).lower()}")
    reference = train(req, run_dir=tmp_path / "reference", progress=False)
    after_step = Trainer.after_step

    def crash_at_26(self, run, step, metrics):
        if step == 25:
            raise KeyboardInterrupt
        return after_step(self, run, step, metrics)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "after_step", crash_at_26)
        with pytest.raises(KeyboardInterrupt):
            train(req, run_dir=tmp_path / "resumed", progress=False)
    assert losses(train(req, run_dir=tmp_path / "resumed", progress=False)) == losses(reference)


def test_stage_cache_is_split_by_the_resolved_draw():
    spec = tiny_spec()
    dataset = Dataset(random_batch(spec, 100), spec, Provenance("toy", "tiny", None, "0" * 64, 100, 1, "qlearning"))
    cls = registry.get("dtql")
    ids = {}
    for draw in ("auto", "buffer", "graph"):
        algo = cls(spec, cls.Config(draw=draw))
        ids[draw] = stage_identity(algo.stages()[0], algo, dataset, seed=0, steps=10)
    assert ids["auto"] == ids["buffer"] != ids["graph"]  # auto is the buffer on the CPU


def test_draw_the_stages_cannot_take_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"draw=graph: srpo.*stage 'behaviour' samples 'shuffled'"):
        train(request("srpo", "draw=graph", steps=2, tiny=()), run_dir=tmp_path / "srpo", progress=False)
    assert not (tmp_path / "srpo").exists()  # nothing claimed: the corrected command may use the same folder
    with pytest.raises(ValueError, match="draw='host': expected one of auto, buffer, graph"):
        registry.get("bc").Config(draw="host")


def test_seed_batch_refuses_graph_draw(tmp_path):
    with pytest.raises(ConfigError, match="draw=graph: td3bc.*seeds are batched"):
        train_seed_batch([request("td3bc", "draw=graph", seed=s) for s in (0, 1)], out=tmp_path, progress=False)
    assert not list(tmp_path.rglob("config.yaml"))
