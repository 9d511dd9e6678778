"""Before a sweep starts: its wall time on this machine, measured from a few warm-up updates.

Per (algorithm, task): the algorithm is built at the task's shapes with the run's resolved config,
each stage times a few updates on synthetic data at its batch size, and acting is timed at the
evaluator's batch (its parallel envs). Run time = Σ stages (steps × s/update) + evaluations ×
(episodes / parallel envs) × horizon × s/act. Dataset generation or download is not included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from offrl_zoo import registry
from offrl_zoo.bench.sweep import RunSpec
from offrl_zoo.bench.timing import seconds_per_update, synthetic_data
from offrl_zoo.config import resolve
from offrl_zoo.envs import get_task
from offrl_zoo.spec import DataSpec
from offrl_zoo.train.cost import seconds_per_act


@dataclass
class RunEstimate:
    algorithm: str
    task: str
    stage_steps: dict[str, int]
    train_s: float
    eval_s: float
    shared_s: dict[str, float]  # seconds of each shareable stage, by its kind (``Stage.shared["kind"]``)

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s


def task_spec(task_id: str) -> DataSpec:
    env = get_task(task_id).make_env()
    try:
        obs, act = env.observation_space, env.action_space
    finally:
        env.close()
    assert isinstance(act, gym.spaces.Box)
    assert obs.shape is not None  # a task's observations are flat arrays (Dict spaces are flattened)
    return DataSpec(
        int(np.prod(obs.shape)), int(np.prod(act.shape)), tuple(map(float, act.low)), tuple(map(float, act.high))
    )


def env_step_seconds(task_id: str, steps: int = 50) -> float:
    """Mean wall time of one env step with random actions (resetting when an episode ends)."""
    import time

    env = get_task(task_id).make_env()
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        return (time.perf_counter() - start) / steps
    finally:
        env.close()


def estimate_run(
    spec: RunSpec, eval_every: int, eval_episodes: int | None, device: torch.device, warmup: int = 2, timed: int = 3
) -> RunEstimate:
    cls = registry.get(spec.algorithm)
    task = get_task(spec.task)
    budget = [f"{k}={v}" for k, v in spec.budget_config]
    cfg = resolve(cls, spec.task, spec.preset, None, [*spec.overrides, *budget]).config
    data_spec = task_spec(spec.task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        algo = cls(data_spec, cfg, device)
        stages = algo.stages()
        data = synthetic_data(data_spec, max(s.batch_size for s in stages) * 2, device)
        steps = {s.name: s.steps if spec.steps is None else min(s.steps, spec.steps) for s in stages}
        stage_s = {s.name: steps[s.name] * seconds_per_update(s, data, warmup, timed, device) for s in stages}
        shared_s = {s.shared["kind"]: stage_s[s.name] for s in stages if s.shared}
        episodes = eval_episodes or task.eval_episodes
        envs = max(1, min(task.eval_envs, episodes))
        act_s = seconds_per_act(algo, envs, warmup=1, repeats=2) + envs * env_step_seconds(spec.task)
    policy_steps = sum(steps[s.name] for s in stages if s.has_policy)
    evaluations = math.ceil(policy_steps / eval_every) + 1 if policy_steps else 0
    eval_s = evaluations * math.ceil(episodes / envs) * task.horizon * act_s
    return RunEstimate(spec.algorithm, spec.task, steps, sum(stage_s.values()), eval_s, shared_s)


def estimate_sweep(
    runs: list[RunSpec], eval_every: int, eval_episodes: int | None, device: torch.device
) -> dict[tuple[str, str], RunEstimate]:
    """One estimate per (algorithm, task); seeds cost the same."""
    out: dict[tuple[str, str], RunEstimate] = {}
    for spec in runs:
        key = (spec.algorithm, spec.task)
        if key not in out:
            out[key] = estimate_run(spec, eval_every, eval_episodes, device)
    return out


def sweep_compute(runs: list[RunSpec], estimates: dict[tuple[str, str], RunEstimate]) -> tuple[float, float]:
    """Estimated compute of ``runs``, and the part of it that shared stages save: of the runs that need
    the same stage kind on the same task and seed, the first trains it and the others reuse it."""
    seen: set[tuple[str, int, str]] = set()
    total = saved = 0.0
    for spec in runs:
        est = estimates[(spec.algorithm, spec.task)]
        total += est.total_s
        for kind, seconds in est.shared_s.items():
            if (spec.task, spec.seed, kind) in seen:
                saved += seconds
            seen.add((spec.task, spec.seed, kind))
    return total - saved, saved
