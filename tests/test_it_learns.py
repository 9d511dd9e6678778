""""It learns": on a tiny task with a fixed seed, each algorithm clearly beats a uniform random policy.

Task: the DTQL paper's 25-Gaussian bandit with the `near` reward (the centre mode is best). A random
action in the data's box scores about 43 on the normalised scale; the data's mean action is near the
best mode, so every method here should reach well above it within a few hundred CPU-cheap steps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from offrl_zoo.envs import get_task, toy
from offrl_zoo.train import RunRequest, train

TASK = "toy-25_gaussian-near"


def random_policy_score(episodes: int = 1000, seed: int = 0) -> float:
    task = get_task(TASK)
    data = toy.toy_data("25_gaussian", "near")
    bound = np.abs(data["actions"]).max()
    actions = np.random.default_rng(seed).uniform(-bound, bound, size=(episodes, 2))
    rho_max = np.linalg.norm(data["actions"], axis=-1).max()
    returns = toy.reward_fn("near", actions, rho_max)
    return float(task.normalized_score(returns).mean())


SMALL_MLP = ["hidden=[64,64]", "batch_size=256"]
# The toy policy at s = 0 is in effect a free Gaussian (zero inputs), so Adam moves its log-std by ≈ lr per
# step: the official lr 3e-3 needs thousands of steps, 3e-2 needs hundreds.
SMALL_DTQL = ["score_hidden=64", "critic_hidden=64", "actor_hidden=[64,64]", "batch_size=256", "sampling=uniform",
              "lr=0.03", "critic_lr=0.03"]


@pytest.mark.parametrize("name, steps, overrides", [
    ("bc", 300, SMALL_MLP), ("td3bc", 300, SMALL_MLP), ("iql", 300, SMALL_MLP),
    ("dtql", 600, SMALL_DTQL),
])
def test_algorithm_beats_random_policy(tmp_path, name, steps, overrides):
    req = RunRequest(name, task=TASK, steps=steps, seed=0, eval_every=steps, eval_episodes=100, overrides=overrides)
    run_dir = train(req, run_dir=tmp_path / name, progress=False)
    final = json.loads((run_dir / "done").read_text())["final_eval"]
    random_score = random_policy_score()
    assert 40 < random_score < 60
    assert final["score_mean"] > random_score + 30, (name, final["score_mean"], random_score)
