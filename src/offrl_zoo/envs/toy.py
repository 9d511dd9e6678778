"""The DTQL paper's 2-D bandit toys (docs/reference.md §14) as datasets and one-step Gymnasium envs.

Data: 10 000 actions in R² at a single dummy state s = 0; the reward depends on the action only.
The env is a one-step bandit whose reward is the same function, so the shared evaluator scores it.
"""

from __future__ import annotations

from functools import cache

import gymnasium as gym
import numpy as np

DISTRIBUTIONS = ("25_gaussian", "swiss_roll_2D")
REWARDS = ("far", "near", "hard")
NUM_SAMPLES = 10_000
MODE_STD = 0.3


def gaussian_grid_means() -> np.ndarray:
    """The 25 mode centres {−10, −5, 0, 5, 10}², row-major over (x, y) as in the official generator."""
    axis = np.linspace(-10.0, 10.0, 5)
    return np.array(np.meshgrid(axis, axis)).T.reshape(-1, 2)


def sample_actions(distribution: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if distribution == "25_gaussian":
        means = gaussian_grid_means()
        per_mode = n // len(means)
        samples = means[:, None, :] + MODE_STD * rng.standard_normal((len(means), per_mode, 2))
        return samples.reshape(-1, 2).astype(np.float32)
    if distribution == "swiss_roll_2D":
        # scikit-learn's make_swiss_roll(n, noise=0.1), coordinates 0 and 2 (x = t cos t, z = t sin t);
        # written out here rather than depending on scikit-learn for four lines.
        t = 1.5 * np.pi * (1.0 + 2.0 * rng.uniform(size=n))
        points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
        return (points + 0.1 * rng.standard_normal((n, 2))).astype(np.float32)
    raise ValueError(f"unknown toy distribution {distribution!r}; expected one of {DISTRIBUTIONS}")


def reward_fn(reward: str, actions: np.ndarray, rho_max: float) -> np.ndarray:
    """Reward of each action; ``rho_max`` is the largest ‖a‖ in the dataset (used by ``near``)."""
    rho = np.linalg.norm(actions, axis=-1)
    if reward == "far":
        return rho
    if reward == "near":
        return rho_max - rho
    if reward == "hard":
        best_corner = (actions[..., 0] < -7.5) & (actions[..., 1] > 7.5)
        return np.where(best_corner, 2.0 * rho, rho)
    raise ValueError(f"unknown toy reward {reward!r}; expected one of {REWARDS}")


@cache
def toy_data(distribution: str, reward: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The dataset as flat arrays (D4RL names): one transition per action, state 0, never done."""
    actions = sample_actions(distribution, NUM_SAMPLES, np.random.default_rng(seed))
    rho_max = float(np.linalg.norm(actions, axis=-1).max())
    n = len(actions)
    return {
        "observations": np.zeros((n, 1), np.float32),
        "actions": actions,
        "rewards": reward_fn(reward, actions, rho_max).astype(np.float32),
        "next_observations": np.zeros((n, 1), np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
    }


class ToyBanditEnv(gym.Env):
    """One-step bandit: observation [0.0], any action in the data's box, reward = the toy reward."""

    metadata = {"render_modes": []}

    def __init__(self, distribution: str = "25_gaussian", reward: str = "far", data_seed: int = 0) -> None:
        data = toy_data(distribution, reward, data_seed)
        self.reward_type = reward
        self.rho_max = float(np.linalg.norm(data["actions"], axis=-1).max())
        bound = float(np.abs(data["actions"]).max())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-bound, bound, shape=(2,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        reward = float(reward_fn(self.reward_type, np.asarray(action, np.float32), self.rho_max))
        return np.zeros(1, np.float32), reward, True, False, {}


ENV_ID = "offrl_zoo/ToyBandit-v0"


def register_env() -> None:
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=f"{__name__}:ToyBanditEnv", max_episode_steps=1)


def toy_metrics(actions: np.ndarray, distribution: str, reward: str, data_seed: int = 0) -> dict[str, float]:
    """The measurements of docs/reference.md §14 for policy samples ``actions`` (N, 2).

    - ``normalized_reward``: mean reward of the samples / the best reward in the dataset;
    - ``in_support``: share of samples within 3 std (0.9) of a mode centre (25_gaussian), or within
      3 noise std (0.3) of some dataset point (swiss_roll_2D, which has no discrete modes);
    - ``modes_hit`` and ``top_mode_share`` (25_gaussian only): distinct modes with at least one
      in-support sample, and the share of all samples in the most-hit mode;
    - ``distinct_actions``: 1 for a deterministic action or a policy collapsed onto one point (e.g. a
      corner of the action box), where N samples say no more than one.
    """
    data = toy_data(distribution, reward, data_seed)
    rho_max = float(np.linalg.norm(data["actions"], axis=-1).max())
    rewards = reward_fn(reward, actions, rho_max)
    out: dict[str, float] = {
        "normalized_reward": float(rewards.mean() / data["rewards"].max()),
        "distinct_actions": len(np.unique(actions, axis=0)),
    }
    if distribution == "25_gaussian":
        dist = np.linalg.norm(actions[:, None, :] - gaussian_grid_means()[None], axis=-1)  # (N, 25)
        nearest, gap = dist.argmin(1), dist.min(1)
        inside = gap <= 3 * MODE_STD
        counts = np.bincount(nearest[inside], minlength=25)
        out.update(
            in_support=float(inside.mean()),
            modes_hit=int((counts > 0).sum()),
            top_mode_share=float(counts.max() / len(actions)),
        )
    else:
        gaps = np.min(np.linalg.norm(actions[:, None, :] - data["actions"][None, ::5], axis=-1), axis=1)
        out["in_support"] = float((gaps <= 0.3).mean())
    return out
