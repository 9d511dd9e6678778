"""Evaluation in Gymnasium vector envs with batched ``act``; every score carries its protocol."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
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
        devices = [algo.obs_loc.device] if algo.obs_loc.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            (result,) = evaluate_together([self], lambda obs: algo.act(obs[0], deterministic=self.deterministic)[None])
        return result

    def result(self, returns: list[float], lengths: list[int], first_actions: list[np.ndarray]) -> dict:
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


def evaluate_together(
    evaluators: list[Evaluator],
    act: Callable[[torch.Tensor], torch.Tensor],
    streams: list[torch.Generator] | None = None,
) -> list[dict]:
    """Evaluates N policies at once, policy i in ``evaluators[i]``'s envs with its episode seeds (the evaluators
    differ only in their envs and seeds): ``act`` maps the observations of all envs, (N, num_envs, obs_dim), to
    actions, so each env step takes one ``act`` call for all N policies (a seed batch evaluates its seeds so).

    A policy whose episodes of a round have all ended goes on being asked for actions until the last policy's
    have too. ``streams[i]`` (policy i's random generator) is set back after each round to its state at the
    policy's own last step, so every policy draws exactly what it draws evaluated alone.
    """
    first = evaluators[0]
    if any(
        (e.episodes, e.num_envs, e.deterministic) != (first.episodes, first.num_envs, first.deterministic)
        for e in evaluators
    ):
        raise ValueError("evaluate_together: the evaluators must share episodes, parallel envs and deterministic")
    n, envs = len(evaluators), [e.envs() for e in evaluators]
    returns: list[list[float]] = [[] for _ in range(n)]
    lengths: list[list[int]] = [[] for _ in range(n)]
    first_actions: list[list[np.ndarray]] = [[] for _ in range(n)]
    for start in range(0, first.episodes, first.num_envs):
        count = min(first.num_envs, first.episodes - start)
        seeds: list[list[int | None]] = [[e.seed + start + i for i in range(first.num_envs)] for e in evaluators]
        for i, (r, length, a) in enumerate(_round(envs, act, seeds, streams)):
            returns[i].extend(r[:count].tolist())
            lengths[i].extend(length[:count].tolist())
            first_actions[i].append(a[:count])
    return [e.result(r, ls, a) for e, r, ls, a in zip(evaluators, returns, lengths, first_actions, strict=True)]


def _round(
    envs: list[gym.vector.SyncVectorEnv],
    act: Callable[[torch.Tensor], torch.Tensor],
    seeds: list[list[int | None]],
    streams: list[torch.Generator] | None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Returns, lengths and first actions of one episode per env, for each policy (``seeds[i]``: policy i's
    episode seeds)."""
    obs = [e.reset(seed=s)[0] for e, s in zip(envs, seeds, strict=True)]
    total = [np.zeros(e.num_envs) for e in envs]
    length = [np.zeros(e.num_envs, dtype=np.int64) for e in envs]
    active = [np.ones(e.num_envs, dtype=bool) for e in envs]
    first: list[np.ndarray | None] = [None] * len(envs)
    finished_streams: dict[int, torch.Tensor] = {}
    while any(a.any() for a in active):
        actions = act(torch.as_tensor(np.stack(obs), dtype=torch.float32)).cpu().numpy()
        for i, e in enumerate(envs):
            if not active[i].any():
                continue  # ended earlier in this round: its actions are not used
            action_np = actions[i].astype(e.action_space.dtype)
            first[i] = action_np if first[i] is None else first[i]
            # Finished envs are auto-reset on their next step; their rewards are masked out.
            obs[i], reward, terminated, truncated, _ = e.step(action_np)
            total[i] += np.where(active[i], reward, 0.0)
            length[i] += active[i]
            active[i] &= ~(terminated | truncated)
            if streams is not None and not active[i].any():
                finished_streams[i] = streams[i].get_state()
    for i, state in finished_streams.items():
        assert streams is not None
        streams[i].set_state(state)
    rounds = []
    for t, n, f in zip(total, length, first, strict=True):
        assert f is not None  # every episode takes at least one step
        rounds.append((t, n, f))
    return rounds
