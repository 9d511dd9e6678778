""" "It learns": on a tiny toy task with a fixed seed, each algorithm does what an untrained one cannot.

Stochastic / sampling actors (DTQL here; DQL, IDQL, SRPO in their own files) are checked on the 25-Gaussian
bandit with the `near` reward (centre best), where a random action scores about 43 and an untrained
sampler about as much. Deterministic MLP actors already output the centre before training, so the
baselines are checked on `hard` (one best corner) instead.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from offrl_zoo.envs import get_task, toy
from offrl_zoo.train import RunRequest, load_run, train

TASK = "toy-25_gaussian-near"


def random_policy_score(episodes: int = 1000, seed: int = 0) -> float:
    task = get_task(TASK)
    data = toy.toy_data("25_gaussian", "near")
    bound = np.abs(data["actions"]).max()
    actions = np.random.default_rng(seed).uniform(-bound, bound, size=(episodes, 2))
    rho_max = np.linalg.norm(data["actions"], axis=-1).max()
    returns = toy.reward_fn("near", actions, rho_max)
    return float(task.normalized_score(returns).mean())


# The toy policy at s = 0 is in effect a free Gaussian (zero inputs), so Adam moves its log-std by ≈ lr per
# step: the official lr 3e-3 needs thousands of steps, 3e-2 needs hundreds.
SMALL_DTQL = [
    "score_hidden=64",
    "critic_hidden=64",
    "actor_hidden=[64,64]",
    "batch_size=256",
    "sampling=uniform",
    "lr=0.01",
    "critic_lr=0.01",
]


def final_score(tmp_path, name: str, task: str, steps: int, overrides: list[str]) -> float:
    req = RunRequest(name, task=task, steps=steps, seed=0, eval_every=steps, eval_episodes=100, overrides=overrides)
    run_dir = train(req, run_dir=tmp_path / name, progress=False)
    return json.loads((run_dir / "done").read_text())["final_eval"]["score_mean"]


def test_dtql_beats_random_policy(tmp_path):
    """The untrained DTQL actor (wide Gaussian, random critic) scores like the random policy here. With these
    settings seeds 0–3 scored 97–98 (lr 0.03 for 600 steps, used before, ranged 19–98 over seeds)."""
    random_score = random_policy_score()
    assert 40 < random_score < 60
    score = final_score(tmp_path, "dtql", TASK, 1500, SMALL_DTQL)
    assert score > random_score + 30, score


# Deterministic MLP actors output ≈ 0 at s = 0 before training, which is already the best action of the `near`
# toy (≈ 97 there), so they are checked on `hard` instead: its best corner (−10, 10) scores 95, the centre 0
# (untrained: 0–2). %BC keeps the top 5 % of transitions (all in that corner); TD3+BC needs a strong Q term.
@pytest.mark.parametrize(
    "name, steps, overrides, floor",
    [
        ("bc", 300, ["top_fraction=0.05", "lr=3e-3"], 30),
        ("td3bc", 600, ["actor_lr=1e-2", "critic_lr=3e-3", "alpha=100"], 15),
    ],
)
def test_deterministic_baselines_move_to_the_best_corner(tmp_path, name, steps, overrides, floor):
    score = final_score(tmp_path, name, "toy-25_gaussian-hard", steps, ["hidden=[64,64]", "batch_size=256", *overrides])
    assert score > floor, (name, score)


def test_iql_critic_ranks_the_best_corner_first(tmp_path):
    """IQL's AWR weights saturate at max_weight on every high corner of the raw-reward toy, so its policy mean
    stays between the corners (score ≈ 0); what must learn is the critic: Q at the doubled corner is highest."""
    req = RunRequest(
        "iql",
        task="toy-25_gaussian-hard",
        steps=600,
        seed=0,
        eval_every=600,
        eval_episodes=10,
        overrides=["hidden=[64,64]", "batch_size=256", "critic_lr=3e-3", "value_lr=3e-3"],
    )
    algo, _, _ = load_run(train(req, run_dir=tmp_path / "iql", progress=False))
    corners = torch.tensor([[-10.0, 10.0], [10.0, 10.0], [-10.0, -10.0], [10.0, -10.0], [0.0, 0.0]])
    with torch.no_grad():
        q = algo.critic(torch.zeros(5, 1), corners).min(0).values
    assert q.argmax().item() == 0, q
    assert (q[0] - q[1:]).min() > 5, q


# DTQL-KL at a small budget: the generator starts as a copy of a briefly pretrained behaviour model (as the
# D4RL code); with lr 3e-3 at width 64 it runs away from the data (docs/toy.md), 1e-3 is stable. Checked on
# `hard`: an untrained generator outputs ≈ the centre (score 0), the best corner scores 95.
SMALL_DTQL_KL = [
    "score_hidden=64",
    "critic_hidden=64",
    "batch_size=256",
    "sampling=uniform",
    "critic_lr=0.03",
    "lr=1e-3",
    "pretrain_steps=300",
    "generator_init=behaviour",
    "fake_score_init=behaviour",
]


def test_dtql_kl_moves_to_the_best_corner(tmp_path):
    score = final_score(tmp_path, "dtql-kl", "toy-25_gaussian-hard", 400, SMALL_DTQL_KL)
    assert score > 50, score
