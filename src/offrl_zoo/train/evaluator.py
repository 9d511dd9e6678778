"""Evaluation in Gymnasium vector envs with batched ``act``; every score carries its protocol."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from offrl_zoo.algorithm import Algorithm
from offrl_zoo.envs.tasks import Task


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _std(values: np.ndarray) -> float:
    """Standard deviation, exactly 0 for identical values (the mean of N equal floats is not always exact)."""
    return float(np.std(values - values[0]))


def eval_deterministic(*choices: bool | None) -> bool:
    """Deterministic or sampled evaluation actions: the first choice made, in the order given (command
    line, then the run's request, then the task's default)."""
    return next(c for c in choices if c is not None)


@dataclass
class Evaluator:
    """Runs ``episodes`` episodes, ``num_envs`` at a time, seeding episode i with ``seed + i``.

    The same seeds are used at every evaluation of a run, so checkpoints are compared on the same
    start states. Evaluation draws its own random numbers inside ``torch.random.fork_rng``, so it
    never shifts the training run's random stream. ``deterministic`` is usually the task's
    ``deterministic_eval`` unless the user chose; a task with ``sample_metrics`` gets them computed on
    the first action of every episode (``samples`` in the result).
    """

    task: Task
    episodes: int
    seed: int
    deterministic: bool
    num_envs: int = 0  # 0: the task's eval_envs

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"eval episodes={self.episodes}: expected at least 1")
        self.num_envs = max(1, min(self.num_envs or self.task.eval_envs, self.episodes))
        self._envs: gym.vector.SyncVectorEnv | None = None

    def envs(self) -> gym.vector.SyncVectorEnv:
        if self._envs is None:
            self._envs = gym.vector.SyncVectorEnv([self.task.make_env for _ in range(self.num_envs)])
        return self._envs

    def close(self) -> None:
        if self._envs is not None:
            self._envs.close()
            self._envs = None

    def protocol(self, algo: Algorithm) -> dict:
        return {
            "episodes": self.episodes,
            "parallel_envs": self.num_envs,
            "env_id": self.task.env_id,
            "env_kwargs": dict(self.task.env_kwargs),
            "horizon": self.task.horizon,
            "gymnasium": _version("gymnasium"),
            "mujoco": _version("mujoco"),
            "episode_seeds": f"{self.seed}..{self.seed + self.episodes - 1}",
            "deterministic": self.deterministic,
            "selection": algo.selection_rule(self.deterministic),
            "score": self.task.score_label if self.task.ref_min is not None else "none (no reference)",
            "reference_returns": {
                "min": self.task.ref_min,
                "max": self.task.ref_max,
                **({"measured_in_eval_env": dict(self.task.measured_refs)} if self.task.measured_refs else {}),
            },
            "note": self.task.note,
        }

    def __call__(self, algo: Algorithm) -> dict:
        envs = self.envs()
        devices = [algo.obs_loc.device] if algo.obs_loc.device.type == "cuda" else []
        returns: list[float] = []
        lengths: list[int] = []
        first_actions: list[np.ndarray] = []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            for start in range(0, self.episodes, self.num_envs):
                count = min(self.num_envs, self.episodes - start)
                r, n, a = self._round(envs, algo, [self.seed + start + i for i in range(self.num_envs)])
                returns.extend(r[:count].tolist())
                lengths.extend(n[:count].tolist())
                first_actions.append(a[:count])
        returns_arr = np.asarray(returns)
        result: dict = {
            "return_mean": float(returns_arr.mean()),
            "return_std": _std(returns_arr),
            "returns": returns,
            "lengths": lengths,
        }
        scores = self.task.normalized_score(returns_arr)
        if scores is not None:
            result.update(score_mean=float(scores.mean()), score_std=_std(scores))
        if self.task.sample_metrics is not None:
            result["samples"] = self.task.sample_metrics(np.concatenate(first_actions))
        return result

    def _round(
        self, envs: gym.vector.SyncVectorEnv, algo: Algorithm, seeds: list[int | None]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns, lengths and first actions of one episode per env."""
        obs, _ = envs.reset(seed=seeds)
        total = np.zeros(envs.num_envs)
        length = np.zeros(envs.num_envs, dtype=np.int64)
        active = np.ones(envs.num_envs, dtype=bool)
        first: np.ndarray | None = None
        while active.any():
            action = algo.act(torch.as_tensor(obs, dtype=torch.float32), deterministic=self.deterministic)
            action_np = action.cpu().numpy().astype(envs.action_space.dtype)
            first = action_np if first is None else first
            # Finished envs are auto-reset on their next step; their rewards are masked out.
            obs, reward, terminated, truncated, _ = envs.step(action_np)
            total += np.where(active, reward, 0.0)
            length += active
            active &= ~(terminated | truncated)
        assert first is not None  # every episode takes at least one step
        return total, length, first
