"""Shared stages: DTQL-KL reuses DTQL's finished pretraining stage, and reusing it changes nothing."""

from __future__ import annotations

import json

import torch

from offrl_zoo.train import RunRequest, train
from offrl_zoo.train.run import load_run

TINY = [
    "batch_size=64",
    "pretrain_steps=6",
    "steps=4",
    "score_hidden=16",
    "critic_hidden=16",
    "actor_hidden=[16]",
    "candidates=8",
]


def request(name: str) -> RunRequest:
    return RunRequest(
        name,
        task="toy-25_gaussian-near",
        seed=3,
        eval_every=10**6,
        eval_episodes=10,
        overrides=TINY,
        log_every=2,
        checkpoint_every=100,
    )


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_dtql_kl_reuses_dtql_pretraining_exactly(tmp_path):
    cache = tmp_path / "stages"
    train(request("dtql"), run_dir=tmp_path / "dtql", progress=False, stage_cache=cache)
    assert len(list(cache.glob("pretrain-*/identity.json"))) == 1
    reused = train(request("dtql-kl"), run_dir=tmp_path / "kl-cached", progress=False, stage_cache=cache)
    fresh = train(request("dtql-kl"), run_dir=tmp_path / "kl-fresh", progress=False)

    assert any("reused_stage" in m for m in metrics(reused))
    assert not any("reused_stage" in m for m in metrics(fresh))
    strip = lambda ms: [
        {k: v for k, v in m.items() if k not in ("time", "updates_per_s")}  # noqa: E731
        for m in ms
        if m["stage"] == "train"
    ]
    assert strip(metrics(reused)) == strip(metrics(fresh))  # the same losses, step for step
    a, _, _ = load_run(reused)
    b, _, _ = load_run(fresh)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def test_different_stage_settings_are_not_shared(tmp_path):
    cache = tmp_path / "stages"
    train(request("dtql"), run_dir=tmp_path / "a", progress=False, stage_cache=cache)
    other = request("dtql")
    other.overrides = [*TINY, "expectile=0.8"]
    run = train(other, run_dir=tmp_path / "b", progress=False, stage_cache=cache)
    assert not any("reused_stage" in m for m in metrics(run))
    assert len(list(cache.glob("pretrain-*/identity.json"))) == 2
