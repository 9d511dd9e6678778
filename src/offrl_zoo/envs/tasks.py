"""Task registry: a dataset id, the env that evaluates it, its horizon and D4RL reference scores.

Gymnasium's MuJoCo v5 envs stand in for D4RL's gym-v2 envs (mujoco-py is unmaintained). They are
close but not identical (e.g. Walker2d-v5 foot friction), so D4RL-normalised scores of v5 returns are
an approximation and are labelled so in every protocol record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np

from offrl_zoo.envs import minari_tasks, toy
from offrl_zoo.envs.make import make
from offrl_zoo.registry import suggest

D4RL_SCORE = "D4RL normalised score x100"
TOY_SCORE = "100 · mean reward / best dataset reward"


@dataclass(frozen=True)
class Task:
    id: str
    env_id: str  # Gymnasium id used for evaluation
    horizon: int
    ref_min: float | None  # reference returns of the normalised score (docs/reference.md §1.3)
    ref_max: float | None
    eval_episodes: int  # default episodes per evaluation (DTQL rule: 10 for gym v2, 100 otherwise)
    source: str  # where the data comes from: "toy" (generated) | "d4rl" | "minari" | "file"
    source_id: str  # the id (or path) within that source
    env_kwargs: Mapping = field(default_factory=dict)
    eval_envs: int = 10  # episodes run side by side in a vector env
    note: str = ""
    # Returns measured in the evaluation env (v5) next to D4RL's constants, e.g. {"random": {...}}.
    measured_refs: Mapping = field(default_factory=dict)
    # The evaluation protocol: what ``score_mean`` is, the default action rule (False: sampled actions),
    # and measurements of the episodes' first actions (the one-state toys: the policy samples).
    score_label: str = D4RL_SCORE
    deterministic_eval: bool = True
    sample_metrics: Callable[[np.ndarray], dict] | None = None

    def make_env(self) -> gym.Env:
        if self.env_id.startswith("minari:"):  # the env recorded in the task's Minari dataset
            return minari_tasks.make_eval_env(self)
        return make(self.env_id, max_episode_steps=self.horizon, **dict(self.env_kwargs))

    def normalized_score(self, returns: np.ndarray) -> np.ndarray | None:
        """D4RL score ×100 of each return, or None when the task has no reference scores."""
        if self.ref_min is None or self.ref_max is None:
            return None
        return 100.0 * (np.asarray(returns, dtype=np.float64) - self.ref_min) / (self.ref_max - self.ref_min)


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.id in _TASKS:
        raise ValueError(f"task {task.id!r} is already registered")
    _TASKS[task.id] = task
    return task


def get_task(task_id: str) -> Task:
    try:
        return _TASKS[task_id]
    except KeyError:
        raise suggest("task", task_id, list(_TASKS)) from None


def all_tasks() -> dict[str, Task]:
    return dict(_TASKS)


_SUITES: dict[str, tuple[str, ...]] = {}


def register_suite(name: str, task_ids: list[str] | tuple[str, ...]) -> None:
    """A named list of tasks that ``compare`` sweeps (e.g. ``gym-medium``)."""
    for task_id in task_ids:
        get_task(task_id)  # every member must be a registered task
    _SUITES[name] = tuple(task_ids)


def get_suite(name: str) -> tuple[str, ...]:
    try:
        return _SUITES[name]
    except KeyError:
        raise suggest("suite", name, list(_SUITES)) from None


def all_suites() -> dict[str, tuple[str, ...]]:
    return dict(_SUITES)


# D4RL REF_MIN_SCORE / REF_MAX_SCORE (d4rl/infos.py; identical for v0/v1/v2 gym variants).
D4RL_LOCOMOTION = {
    "hopper": ("Hopper-v5", -20.272305, 3234.3),
    "halfcheetah": ("HalfCheetah-v5", -280.178953, 12135.0),
    "walker2d": ("Walker2d-v5", 1.629008, 4592.3),
}
D4RL_GYM_DATASETS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")


V5_REFERENCES = Path(__file__).parent / "v5_references.json"  # written by benchmarks/dataset_stats.py


def _measured_v5_references() -> dict:
    return json.loads(V5_REFERENCES.read_text())


def _register_builtin_tasks() -> None:
    measured = _measured_v5_references()
    for domain, (env_id, ref_min, ref_max) in D4RL_LOCOMOTION.items():
        for kind in D4RL_GYM_DATASETS:
            task_id = f"{domain}-{kind}-v2"
            register_task(
                Task(
                    id=task_id,
                    env_id=env_id,
                    horizon=1000,
                    ref_min=ref_min,
                    ref_max=ref_max,
                    eval_episodes=10,
                    source="d4rl",
                    source_id=task_id,
                    note=f"evaluated in Gymnasium {env_id} as a stand-in for D4RL's mujoco-py v2 env; "
                    "normalised score approximate; data: the real D4RL file when available, else the "
                    "D4RL-style dataset offrl-zoo generates (offrl-zoo data list)",
                    measured_refs=measured.get(domain, {}),
                )
            )
    domains = list(D4RL_LOCOMOTION)
    register_suite("gym-medium", [f"{d}-medium-v2" for d in domains])
    register_suite("gym", [f"{d}-{k}-v2" for k in ("medium", "medium-replay", "medium-expert") for d in domains])
    for kwargs in minari_tasks.task_kwargs().values():
        register_task(Task(**kwargs))
    for name, task_ids in minari_tasks.SUITES.items():
        register_suite(name, task_ids)
    toy.register_env()
    for dist in toy.DISTRIBUTIONS:
        for reward in toy.REWARDS:
            if dist == "swiss_roll_2D" and reward == "hard":
                continue  # not one of the paper's toys (its "hard" corner is a 25_gaussian mode)
            data = toy.toy_data(dist, reward)
            register_task(
                Task(
                    id=f"toy-{dist}-{reward}",
                    env_id=toy.ENV_ID,
                    horizon=1,
                    ref_min=0.0,
                    ref_max=float(data["rewards"].max()),
                    eval_episodes=1000,
                    source="toy",
                    source_id=f"{dist}/{reward}",
                    env_kwargs={"distribution": dist, "reward": reward},
                    eval_envs=100,
                    note="DTQL paper 2-D bandit: one state, so an evaluation is one policy sample per episode, "
                    "measured as in docs/toy.md (the evaluation's `samples`)",
                    # The paper reads these policies by their samples; a deterministic action is one point.
                    score_label=TOY_SCORE,
                    deterministic_eval=False,
                    sample_metrics=partial(toy.toy_metrics, distribution=dist, reward=reward),
                )
            )
    register_suite("toy", [t for t in _TASKS if t.startswith("toy-")])


_register_builtin_tasks()
