"""Roll a policy out in Gymnasium vector envs and keep the steps in D4RL's flat layout.

Episodes are written whole and contiguously, in the order they finish (ties by env index), so the
output depends only on the env seeds and the policy's random generator: the same call gives the same
arrays. Gymnasium 1.x vector envs reset a finished sub-env on the *next* ``step`` call (the action given
then is ignored); that step is skipped. When a transition budget is reached the last episode is cut
where the budget ends, without a terminal or timeout flag, as in D4RL's files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import numpy as np
import torch

if TYPE_CHECKING:
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

    from offrl_zoo.nets.policies import TanhGaussianPolicy

# policy(observations (n, obs_dim) float32, generator) -> (actions (n, A), log-probabilities (n,))
Policy = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]

STEP_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
INFO_KEYS = ("action_log_probs", "qpos", "qvel")


@dataclass
class Rollout:
    arrays: dict[str, np.ndarray]  # STEP_KEYS plus infos/<INFO_KEYS>
    episode_returns: list[float] = field(default_factory=list)  # complete episodes only
    episode_lengths: list[int] = field(default_factory=list)


def actor_policy(actor: TanhGaussianPolicy, deterministic: bool = False) -> Policy:
    """A ``TanhGaussianPolicy`` as a rollout policy: stochastic samples with their log-densities."""

    @torch.no_grad()
    def policy(obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if deterministic:
            action = actor(obs, deterministic=True)
            return action, torch.zeros(len(obs))
        return actor.sample_with_log_prob(obs, generator)

    return policy


def uniform_policy(low: np.ndarray, high: np.ndarray) -> Policy:
    low_t, high_t = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
    log_prob = -float(np.log(high - low).sum())

    def policy(obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand((len(obs), len(low_t)), generator=generator)
        return low_t + u * (high_t - low_t), torch.full((len(obs),), log_prob)

    return policy


class _Episode:
    def __init__(self) -> None:
        self.rows: dict[str, list[Any]] = {k: [] for k in (*STEP_KEYS, *INFO_KEYS)}
        self.ret = 0.0

    def __len__(self) -> int:
        return len(self.rows["rewards"])

    def close(self) -> dict[str, np.ndarray]:
        """The per-step lists packed into arrays (a finished episode is kept compact in memory)."""
        return {k: np.asarray(v) for k, v in self.rows.items()}


def rollout(
    make_env: Callable[[], gym.Env],
    policy: Policy,
    *,
    seed: int,
    transitions: int | None = None,
    episodes_per_env: int | None = None,
    num_envs: int = 16,
    progress: Callable[[int], None] | None = None,
) -> Rollout:
    """Collect ``transitions`` steps, or ``episodes_per_env`` whole episodes in every env.

    Env i is seeded once with ``seed + i``; actions are drawn from a generator seeded with ``seed``.
    ``progress(n)`` is called with the number of steps stored so far.
    """
    if (transitions is None) == (episodes_per_env is None):
        raise ValueError("rollout: give exactly one of transitions or episodes_per_env")
    envs = gym.vector.SyncVectorEnv([make_env for _ in range(num_envs)])
    generator = torch.Generator().manual_seed(seed)
    obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
    live = [_Episode() for _ in range(num_envs)]
    finished: list[dict[str, np.ndarray]] = []  # closed episodes
    stored, skip = 0, np.zeros(num_envs, bool)
    done_count = np.zeros(num_envs, int)
    result = Rollout(arrays={})

    def budget_left() -> bool:
        if transitions is not None:
            return stored < transitions
        return bool((done_count < episodes_per_env).any())

    while budget_left():
        action, log_prob = policy(torch.as_tensor(obs, dtype=torch.float32), generator)
        action_np = action.numpy().astype(np.float32)
        log_prob_np = log_prob.numpy()
        before = [_mujoco_state(e) for e in envs.envs]
        next_obs, reward, terminated, truncated, _ = envs.step(action_np)
        for i in range(num_envs):
            if skip[i]:  # this call only reset env i
                skip[i] = False
                continue
            if episodes_per_env is not None and done_count[i] >= episodes_per_env:
                continue
            ep = live[i]
            for key, value in (
                ("observations", obs[i]),
                ("actions", action_np[i]),
                ("rewards", reward[i]),
                ("terminals", terminated[i]),
                ("timeouts", truncated[i] and not terminated[i]),
                ("next_observations", next_obs[i]),
                ("action_log_probs", log_prob_np[i]),
                ("qpos", before[i][0]),
                ("qvel", before[i][1]),
            ):
                ep.rows[key].append(value)
            ep.ret += float(reward[i])
            if terminated[i] or truncated[i]:
                skip[i] = True
                done_count[i] += 1
                result.episode_returns.append(ep.ret)
                result.episode_lengths.append(len(ep))
                finished.append(ep.close())
                stored += len(ep)
                live[i] = _Episode()
                if progress is not None:
                    progress(stored)
        obs = next_obs
    envs.close()
    if transitions is not None and stored < transitions:  # unreachable: the loop runs until the budget
        raise RuntimeError("rollout ended before its budget")
    result.arrays = _concatenate(finished, transitions)
    return result


def _mujoco_state(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """(qpos, qvel) of a MuJoCo env (the vector env types its sub-envs as plain ``gym.Env``)."""
    data = cast("MujocoEnv", env.unwrapped).data
    return data.qpos.copy(), data.qvel.copy()


def _concatenate(episodes: list[dict[str, np.ndarray]], limit: int | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key in (*STEP_KEYS, *INFO_KEYS):
        parts = [ep[key] for ep in episodes]
        array = np.concatenate(parts) if parts else np.zeros(0)
        if limit is not None:
            array = array[:limit]
        name = f"infos/{key}" if key in INFO_KEYS else key
        out[name] = array
    for key in ("observations", "actions", "next_observations", "rewards", "infos/action_log_probs"):
        out[key] = out[key].astype(np.float32)
    for key in ("terminals", "timeouts"):
        out[key] = out[key].astype(bool)
    return out
