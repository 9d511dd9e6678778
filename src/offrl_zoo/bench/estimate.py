"""Before a sweep starts: its wall time on this machine, measured from a few warm-up updates.

Per (algorithm, task): the algorithm is built at the task's shapes with the run's resolved config,
each stage times a few updates on synthetic data at its batch size, and acting is timed at the
evaluator's batch (its parallel envs). Run time = Σ stages (steps × s/update) + evaluations ×
(episodes / parallel envs) × horizon × s/act. The timings are kept per run settings, so a plan at
another step cap (``compare``'s cheaper alternative) is priced without measuring again. Generating a
missing dataset is estimated apart (``generation_seconds``); a download is not included.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from offrl_zoo import registry
from offrl_zoo.bench.sweep import RunSpec
from offrl_zoo.bench.timing import seconds_per_update, synthetic_data
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
    whole: RunEstimate | None = None  # the whole run, when this estimate covers what is left after a checkpoint

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s


@dataclass(frozen=True)
class StageTiming:
    name: str
    steps: int  # the stage's steps in the resolved config, before a budget's cap
    seconds_per_update: float
    has_policy: bool
    shared_kind: str | None


@dataclass(frozen=True)
class RunTiming:
    """What a run's settings cost, measured once: priced at any step cap with ``estimate``."""

    algorithm: str
    task: str
    stages: tuple[StageTiming, ...]
    eval_s: float  # one evaluation: episodes / parallel envs × horizon × (act + env steps)

    def estimate(self, cap: int | None, eval_every: int, resume_at: tuple[int, int] | None = None) -> RunEstimate:
        """The run at step cap ``cap``; with ``resume_at`` (its checkpoint's stage index and next step), what is
        left of it after that checkpoint, ``whole`` holding the whole run."""
        steps = {s.name: s.steps if cap is None else min(s.steps, cap) for s in self.stages}
        policy_steps = sum(steps[s.name] for s in self.stages if s.has_policy)
        evaluations = math.ceil(policy_steps / eval_every)  # every eval_every policy steps, and at the end
        whole = self._priced(steps, evaluations)
        if resume_at is None:
            return whole
        index, next_step = resume_at
        left = {
            s.name: 0 if i < index else steps[s.name] - (next_step if i == index else 0)
            for i, s in enumerate(self.stages)
        }
        policy_done = policy_steps - sum(left[s.name] for s in self.stages if s.has_policy)
        evaluated = policy_done // eval_every + (policy_done == policy_steps and policy_steps % eval_every != 0)
        return replace(self._priced(left, evaluations - evaluated), whole=whole)

    def _priced(self, steps: dict[str, int], evaluations: int) -> RunEstimate:
        stage_s = {s.name: steps[s.name] * s.seconds_per_update for s in self.stages}
        # a shared stage already behind a resumed run costs it 0 s, and is cached for the runs that share it
        shared_s = {s.shared_kind: stage_s[s.name] for s in self.stages if s.shared_kind}
        return RunEstimate(self.algorithm, self.task, steps, sum(stage_s.values()), evaluations * self.eval_s, shared_s)


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


def measure_run(
    spec: RunSpec, eval_episodes: int | None, device: torch.device, warmup: int = 2, timed: int = 3
) -> RunTiming:
    cls = registry.get(spec.algorithm)
    task = get_task(spec.task)
    data_spec = task_spec(spec.task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        algo = cls(data_spec, spec.config(), device)
        stages = algo.stages()
        data = synthetic_data(data_spec, max(s.batch_size for s in stages) * 2, device)
        timings = tuple(
            StageTiming(
                s.name,
                s.steps,
                seconds_per_update(s, data, warmup, timed, device),
                s.has_policy,
                str(s.shared["kind"]) if s.shared else None,
            )
            for s in stages
        )
        episodes = eval_episodes or task.eval_episodes
        envs = max(1, min(task.eval_envs, episodes))
        act_s = seconds_per_act(algo, envs, warmup=1, repeats=2) + envs * env_step_seconds(spec.task)
    return RunTiming(spec.algorithm, spec.task, timings, math.ceil(episodes / envs) * task.horizon * act_s)


def estimate_run(
    spec: RunSpec, eval_every: int, eval_episodes: int | None, device: torch.device, warmup: int = 2, timed: int = 3
) -> RunEstimate:
    return measure_run(spec, eval_episodes, device, warmup, timed).estimate(spec.steps, eval_every)


def estimate_sweep(
    runs: list[RunSpec],
    eval_every: int,
    eval_episodes: int | None,
    device: torch.device,
    timings: dict[tuple, RunTiming] | None = None,
    resume_at: dict[RunSpec, tuple[int, int]] | None = None,
) -> dict[RunSpec, RunEstimate]:
    """One estimate per run, of what is left of it (``resume_at``: the checkpoints' stage index and next step).
    Runs of one algorithm, task and settings are measured once: ``timings`` (by ``RunSpec.settings``) holds the
    measurements already made, and receives the new ones."""
    timings = {} if timings is None else timings
    resume_at = resume_at or {}
    out: dict[RunSpec, RunEstimate] = {}
    for spec in runs:
        if spec.settings() not in timings:
            timings[spec.settings()] = measure_run(spec, eval_episodes, device)
        out[spec] = timings[spec.settings()].estimate(spec.steps, eval_every, resume_at.get(spec))
    return out


def sweep_compute(runs: list[RunSpec], estimates: dict[RunSpec, RunEstimate]) -> tuple[float, float]:
    """Estimated compute of ``runs``, and the part of it that shared stages save: of the runs that need
    the same stage kind on the same task and seed, the first trains it and the others reuse it."""
    seen: set[tuple[str, int, str]] = set()
    total = saved = 0.0
    for spec in runs:
        est = estimates[spec]
        total += est.total_s
        for kind, seconds in est.shared_s.items():
            if (spec.task, spec.seed, kind) in seen:
                saved += seconds
            seen.add((spec.task, spec.seed, kind))
    return total - saved, saved


# Rough time to roll out one generated locomotion dataset row: docs/data.md's timings on the 2-core
# development machine (114-220 s per million rows of medium, expert and replay data), rounded up.
GENERATION_S_PER_ROW = 200 / 1_000_000


def rows_to_generate(task_ids: list[str], data_source: str) -> dict[str, int]:
    """Rows each task's run would roll out first because its generated dataset is not cached (none
    where a cached real D4RL file is used). Nothing is generated here."""
    from offrl_zoo.data.generation.datasets import can_generate
    from offrl_zoo.data.sources import d4rl_cache_path

    out = {}
    for task_id in dict.fromkeys(task_ids):
        task = get_task(task_id)
        if task.source != "d4rl" or data_source == "d4rl" or not can_generate(task.source_id):
            continue
        if data_source == "auto" and d4rl_cache_path(task.source_id).is_file():
            continue
        if rows := _missing_rows(task.source_id):
            out[task_id] = rows
    return out


def _missing_rows(dataset_id: str) -> int:
    """Rows to roll out for a generated dataset; medium-expert joins the medium and expert files."""
    from offrl_zoo.data.generation.datasets import generated_path, parse_task, recipe

    if generated_path(dataset_id).is_file():
        return 0
    domain, kind = parse_task(dataset_id)
    if kind == "medium-expert":
        return sum(_missing_rows(f"{domain}-{half}-v2") for half in ("medium", "expert"))
    return int(recipe(dataset_id)["size"])


def generation_seconds(rows: dict[str, int]) -> float:
    return sum(rows.values()) * GENERATION_S_PER_ROW


# Per-update times of every built-in stage measured on a GPU (one seed, hopper shapes; eager, and captured where
# the probe captured it): the plan's GPU alternative on a machine without one. benchmarks/speed/capture.py made them.
GPU_REFERENCE = Path(__file__).with_name("gpu_reference.json")


@cache
def gpu_reference() -> dict:
    return json.loads(GPU_REFERENCE.read_text())


def gpu_training_seconds(
    runs: list[RunSpec], estimates: dict[RunSpec, RunEstimate], captured: bool = False
) -> tuple[float, list[str], list[str]]:
    """Seconds of training updates of ``runs`` one after another on the reference GPU (each stage's planned steps
    × its measured time per update; evaluation not included); the algorithms the reference has no figure for
    (left out of the sum); and, with ``captured`` (the fast path's captured updates), the ``algorithm:stage``s
    that have no captured figure and are priced at their eager one."""
    ref = gpu_reference()
    eager, fast = ref["ms_per_update"], ref["captured"]["ms_per_update"] if captured else {}
    total, unknown, at_eager = 0.0, [], set()
    for spec in runs:
        est = estimates[spec]
        per_stage = eager.get(spec.algorithm, {})
        if not all(stage in per_stage for stage in est.stage_steps):
            unknown.append(spec.algorithm)
            continue
        for stage, steps in est.stage_steps.items():
            ms = fast.get(spec.algorithm, {}).get(stage)
            if captured and ms is None:
                at_eager.add(f"{spec.algorithm}:{stage}")
            total += steps * (per_stage[stage] if ms is None else ms) / 1000
    return total, sorted(set(unknown)), sorted(at_eager)
