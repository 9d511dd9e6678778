"""``draw``: who draws the training batches. ``graph`` (the update draws its own, so the fast path compiles and
captures the draw with the step) gives the same run fast and eager and resumes exactly, uniform and shuffled;
``auto`` is the buffer off CUDA; the rule splits the stage cache; seed batches refuse ``graph`` up front."""

from __future__ import annotations

import json

import pytest
import torch

from offrl_zoo import registry
from offrl_zoo.algorithm import Algorithm
from offrl_zoo.config import ConfigError
from offrl_zoo.data.buffer import NO_BATCH, ShuffledDraw, UniformDraw
from offrl_zoo.data.dataset import Dataset, Provenance
from offrl_zoo.testing import GRAPH_ATOL, GRAPH_RTOL, random_batch, tiny_spec
from offrl_zoo.train import RunRequest, train
from offrl_zoo.train.run_seeds import train_seed_batch
from offrl_zoo.train.stage_cache import stage_identity

TASK = "toy-25_gaussian-near"
# fast against eager over a dozen updates: the rounding of functional Adam and compiled code, as the conformance
# check of graph-safety allows it (another row drawn would be far outside)
LOSS_RTOL, LOSS_ATOL = GRAPH_RTOL, GRAPH_ATOL


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


def test_shuffled_draw_walks_a_new_permutation_each_pass_and_resumes_anywhere():
    data = random_batch(tiny_spec(), 50, seed=0)
    data["row"] = torch.arange(50)
    draw = ShuffledDraw(data, 8, seed=3)  # 6 batches a pass, the last 2 rows dropped
    rows = []
    for step in range(18):
        draw.before_step(step)
        rows.append(draw()["row"])
    passes = [torch.cat(rows[i : i + 6]) for i in (0, 6, 12)]
    for walked in passes:
        assert len(walked) == 48 and len(set(walked.tolist())) == 48  # without replacement within a pass
    assert not torch.equal(passes[0], passes[1]) and not torch.equal(passes[1], passes[2])
    for start in (7, 12):  # a fresh draw, as after a resume: mid-pass, and at a pass's start
        resumed = ShuffledDraw(data, 8, seed=3)
        for step in range(start, 18):
            resumed.before_step(step)
            assert torch.equal(resumed()["row"], rows[step]), (start, step)


# a step variant (TD3+BC's delayed actor); two stages (DTQL); shuffled stages (SRPO, 300 rows: 9 batches a pass)
@pytest.mark.parametrize("name", ["td3bc", "dtql", "srpo"])
def test_compiled_update_drawing_its_own_batch_matches_eager(name):
    """The draw, then the update compiled as one graph: the rows the eager update draws and its losses, across a
    pass of the shuffled draw (the draw reads only device tensors, so it captures with the step on CUDA)."""
    data = random_batch(tiny_spec(), 300, seed=1)
    cls = registry.get(name)
    runs = {}
    for fast in (True, False):
        torch.manual_seed(0)
        algo = cls(tiny_spec(), cls.Config(fast=fast, draw="graph"))
        torch.manual_seed(1)
        runs[fast] = []
        for stage in algo.stages():
            shuffled = ShuffledDraw(data, 32, seed=0)
            draw = shuffled if stage.sampling == "shuffled" else UniformDraw(data, 32)
            update = algo.compiled_update(stage, draw=draw)
            for step in range(4 if draw is not shuffled else 11):
                shuffled.before_step(step)
                runs[fast].append({k: float(v) for k, v in update(NO_BATCH, step).items()})
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


# SRPO's shuffled stages with 3 batches of 3 000 a pass over the toy's 10 000 rows: the kill at step 26 resumes
# from step 20, mid-pass
SRPO_TINY = ("score_hidden=16", "score_blocks=1", "critic_hidden=[16]", "policy_hidden=16", "behaviour_batch_size=3000")


@pytest.mark.parametrize(
    ("name", "fast", "tiny"), [("iql", False, None), ("iql", True, None), ("srpo", False, SRPO_TINY)]
)
def test_graph_draw_resumes_exactly(tmp_path, interrupted, name, fast, tiny):
    """Killed after the step-20 checkpoint: the uniform draw's state is the default generator's, which every
    checkpoint holds, and the shuffled draw rebuilds its pass from the step, so the resumed run draws the batches
    the uninterrupted one drew."""
    extra = {} if tiny is None else {"tiny": tiny}
    req = request(name, "draw=graph", f"fast={str(fast).lower()}", **extra)
    reference = train(req, run_dir=tmp_path / "reference", progress=False)
    with interrupted(25):
        train(req, run_dir=tmp_path / "resumed", progress=False)
    assert losses(train(req, run_dir=tmp_path / "resumed", progress=False)) == losses(reference)


def test_a_resumed_stage_keeps_drawing_as_it_began(tmp_path, monkeypatch, interrupted):
    """draw=auto resolved to graph when the run started (as on CUDA with capture); the resumed session would
    resolve it to the buffer (as on the CPU), yet the stage goes on drawing in the update, as its checkpoint says."""
    req = request("iql", "draw=auto")
    with monkeypatch.context() as patch:
        patch.setattr(Algorithm, "batch_draw", lambda self, stage, seed_batch=False: "graph")
        reference = train(req, run_dir=tmp_path / "reference", progress=False)
        with interrupted(25):
            train(req, run_dir=tmp_path / "resumed", progress=False)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["draw"] == "graph"
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


def test_unknown_draw_is_refused():
    with pytest.raises(ValueError, match="draw='host': expected one of auto, buffer, graph"):
        registry.get("bc").Config(draw="host")


def test_seed_batch_refuses_graph_draw(tmp_path):
    with pytest.raises(ConfigError, match="draw=graph: td3bc.*seeds are batched"):  # refused before any folder
        train_seed_batch([request("td3bc", "draw=graph", seed=s) for s in (0, 1)], out=tmp_path, progress=False)
    assert not list(tmp_path.rglob("config.yaml"))
