"""SAC behaviour training (exact resume, snapshots), the vector-env rollout, and the shipped policies."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from offrl_zoo import io as offrl_io
from offrl_zoo.data.generation.online import BehaviourRun, train_behaviour
from offrl_zoo.data.generation.rollout import rollout, uniform_policy
from offrl_zoo.data.generation.sac import SACConfig
from offrl_zoo.data.generation.shipped import (
    ENV_IDS,
    EXPERT_CANDIDATES,
    PACKAGE_POLICIES,
    export_policies,
    shipped_policies,
)
from offrl_zoo.data.sources import sha256_file
from offrl_zoo.io import load_torch
from offrl_zoo.nets import TanhGaussianPolicy

TINY_SAC = SACConfig(hidden=(32, 32), start_steps=100, batch_size=64)


def tiny_run(out: Path, steps: int = 400) -> BehaviourRun:
    return BehaviourRun(
        "Hopper-v5",
        out,
        seed=3,
        total_steps=steps,
        snapshot_every=200,
        checkpoint_every=100,
        eval_episodes=2,
        log_every=100,
    )


def test_sac_log_prob_is_the_tanh_gaussian_density():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(4, 3, (16,), max_action=1.0, init="torch")
    obs = torch.randn(64, 4)
    action, log_prob = policy.sample_with_log_prob(obs)
    mu, std = policy.mean_std(obs)
    reference = TransformedDistribution(Normal(mu, std), [TanhTransform(cache_size=1)]).log_prob(action).sum(-1)
    torch.testing.assert_close(log_prob, reference, rtol=1e-4, atol=1e-4)


def killed_at_checkpoint(monkeypatch, run: BehaviourRun, n: int, written: bool) -> None:
    """Train ``run`` and kill it at its ``n``-th checkpoint, right after (``written``) or before it reached the disk."""
    saves = {"n": 0}
    real_save = offrl_io.save_torch

    def save_then_die(path, obj):
        if written:
            real_save(path, obj)
        if Path(path).name == "checkpoint.pt":
            saves["n"] += 1
            if saves["n"] == n:
                raise KeyboardInterrupt
        if not written:
            real_save(path, obj)

    with monkeypatch.context() as patch:
        patch.setattr(offrl_io, "save_torch", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            train_behaviour(run, TINY_SAC, progress=False)


def without_time(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in path.read_text().splitlines()]


def test_behaviour_training_resumes_exactly(tmp_path, monkeypatch):
    full = train_behaviour(tiny_run(tmp_path / "full"), TINY_SAC, progress=False)
    killed_at_checkpoint(monkeypatch, tiny_run(tmp_path / "cut"), n=2, written=True)
    assert load_torch(tmp_path / "cut" / "checkpoint.pt")["step"] < 400
    cut = train_behaviour(tiny_run(tmp_path / "cut"), TINY_SAC, progress=False)

    for name in ("step_0000200.pt", "step_0000400.pt"):
        a, b = load_torch(full / "snapshots" / name), load_torch(cut / "snapshots" / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    records = without_time(full / "snapshots.jsonl")  # time: wall-clock
    assert records == without_time(cut / "snapshots.jsonl")
    assert [r["step"] for r in records] == [200, 400]
    assert len(records[0]["stochastic"]["returns"]) == 2


def test_run_killed_before_its_first_checkpoint_starts_clean(tmp_path, monkeypatch):
    full = train_behaviour(tiny_run(tmp_path / "full", steps=150), TINY_SAC, progress=False)
    killed_at_checkpoint(monkeypatch, tiny_run(tmp_path / "cut", steps=150), n=1, written=False)
    assert not (tmp_path / "cut" / "checkpoint.pt").exists() and (tmp_path / "cut" / "metrics.jsonl").stat().st_size
    cut = train_behaviour(tiny_run(tmp_path / "cut", steps=150), TINY_SAC, progress=False)
    assert without_time(full / "metrics.jsonl") == without_time(cut / "metrics.jsonl")


def test_resume_refuses_other_settings(tmp_path):
    train_behaviour(tiny_run(tmp_path / "r", steps=150), TINY_SAC, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train_behaviour(
            tiny_run(tmp_path / "r", steps=150),
            SACConfig(hidden=(32, 32), start_steps=50, batch_size=64),
            progress=False,
        )


def test_rollout_layout_and_determinism():
    make = lambda: gym.make("Hopper-v5", max_episode_steps=15)  # noqa: E731
    env = make()
    policy = uniform_policy(env.action_space.low, env.action_space.high)
    first = rollout(make, policy, seed=5, transitions=100, num_envs=4)
    again = rollout(make, policy, seed=5, transitions=100, num_envs=4)
    for key, value in first.arrays.items():
        np.testing.assert_array_equal(value, again.arrays[key], err_msg=key)
    a = first.arrays
    assert len(a["rewards"]) == 100 and a["observations"].dtype == np.float32
    ends = a["terminals"] | a["timeouts"]
    assert not (a["terminals"] & a["timeouts"]).any()
    inside = np.flatnonzero(~ends[:-1])  # within an episode the next row starts where this one ended
    np.testing.assert_array_equal(a["next_observations"][inside], a["observations"][inside + 1])
    # Hopper's observation is qpos[1:] then clipped qvel, recorded before the step
    np.testing.assert_allclose(a["observations"][:, :5], a["infos/qpos"][:, 1:], rtol=0, atol=1e-6)
    lengths = np.diff(np.r_[-1, np.flatnonzero(ends)])
    assert lengths.max() <= 15 and a["timeouts"].any()
    assert first.episode_lengths[: len(lengths)] == lengths.tolist()


def test_export_picks_medium_expert_and_replay(tmp_path):
    run = train_behaviour(tiny_run(tmp_path / "run", steps=600), TINY_SAC, progress=False)
    records = [json.loads(x) for x in (run / "snapshots.jsonl").read_text().splitlines()]
    returns = [r["stochastic"]["mean"] for r in records]
    chosen = export_policies(
        run, "hopper", tmp_path / "pol", medium_range=(min(returns) - 1, max(returns) + 1), recheck_episodes=3
    )
    shipped = shipped_policies("hopper", tmp_path / "pol")
    assert shipped["medium"].meta["eval_episodes"] == shipped["expert"].meta["eval_episodes"] == 3  # re-checked
    top = sorted(records, key=lambda r: r["stochastic"]["mean"])[-EXPERT_CANDIDATES:]
    assert chosen["expert"][0] in {r["step"] for r in top}  # among the best training-time evaluations
    assert chosen["expert"][1] == shipped["expert"].meta["return_stochastic"]["mean"]
    assert chosen["medium"][0] == max(s for n, (s, _) in chosen.items() if n.startswith("replay_"))
    for policy in shipped_policies("hopper", tmp_path / "pol").values():
        assert policy.meta["sha256"] == sha256_file(policy.path)
        assert policy.load()(torch.zeros(1, 11)).shape == (1, 3)
    export_policies(
        run,
        "hopper",
        tmp_path / "part",
        medium_range=(min(returns) - 1, max(returns) + 1),
        roles=("medium", "replay"),
        recheck_episodes=0,
    )
    assert "expert" not in shipped_policies("hopper", tmp_path / "part")


@pytest.mark.parametrize("domain", sorted(ENV_IDS))
def test_shipped_metadata_matches_the_weights(domain):
    policies = list(shipped_policies(domain, PACKAGE_POLICIES).values())
    for policy in policies:
        assert policy.meta["sha256"] == sha256_file(policy.path), policy.path
        assert policy.meta["env_id"] == ENV_IDS[domain] and policy.meta["domain"] == domain
        actor = policy.load()
        assert sum(p.numel() for p in actor.parameters()) > 0
    names = {p.name for p in policies}
    if names:  # the medium data needs the medium snapshot and the replay sequence ending with it
        replay = [p for p in policies if p.name.startswith("replay_")]
        assert "medium" in names and replay, names
        assert max(p.step for p in replay) == next(p.step for p in policies if p.name == "medium")


def test_fixed_temperature_is_not_trained():
    from offrl_zoo.data.generation.sac import SAC
    from offrl_zoo.testing import random_batch, tiny_spec

    spec = tiny_spec()
    agent = SAC(spec.obs_dim, spec.action_dim, SACConfig(hidden=(16,), fixed_alpha=0.2))
    batch = random_batch(spec)
    batch["next", "terminated"] = batch["next", "done"]
    for _ in range(3):
        metrics = agent.update(batch)
    assert float(metrics["alpha"]) == pytest.approx(0.2)
    auto = SAC(spec.obs_dim, spec.action_dim, SACConfig(hidden=(16,)))
    assert float(auto.update(batch)["alpha"]) != 1.0  # tuned from its first step
