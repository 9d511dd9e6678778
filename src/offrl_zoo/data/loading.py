"""Resolve a task and/or a user dataset argument to a ``Dataset`` checked against its evaluation env."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np

from offrl_zoo.data import sources
from offrl_zoo.data.dataset import Dataset, DatasetError
from offrl_zoo.envs.tasks import Task


def custom_task(dataset_arg: str, env_id: str) -> Task:
    """An unregistered task for ``--dataset PATH|minari:ID --env ENV_ID`` (no reference scores)."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as err:
        raise DatasetError(f"--env {env_id!r}: not a registered Gymnasium env ({err})") from err
    source = "minari" if dataset_arg.startswith("minari:") else "file"
    return Task(
        id=f"custom:{Path(dataset_arg.removeprefix('minari:')).stem}", env_id=env_id,
        horizon=spec.max_episode_steps or 1000, ref_min=None, ref_max=None, eval_episodes=10,
        source=source, source_id=dataset_arg, note="user dataset; no reference scores, raw returns only",
    )


def load_dataset(task: Task, dataset_arg: str | None = None, rule: str = "qlearning", download: bool = True) -> Dataset:
    """The task's dataset, or ``dataset_arg`` (an HDF5 path or ``minari:ID``) evaluated in the task's env."""
    arg = dataset_arg or (task.source_id if task.source in ("file", "minari") else None)
    if arg is not None and arg.startswith("minari:"):
        dataset = sources.load_minari(arg.removeprefix("minari:"), download=download)
    elif arg is not None:
        dataset = sources.load_d4rl_file(arg, task.id, rule, task.horizon)
    elif task.source == "toy":
        distribution, reward = task.source_id.split("/")
        dataset = sources.load_toy(distribution, reward)
    elif task.source == "d4rl":
        path = sources.fetch_d4rl(task.source_id, download=download)
        dataset = sources.load_d4rl_file(path, task.id, rule, task.horizon)
    else:
        raise DatasetError(f"task {task.id}: unknown data source {task.source!r}")
    return match_env(dataset, task)


def match_env(dataset: Dataset, task: Task) -> Dataset:
    """Check the dataset's widths against the task's env and take the env's action bounds."""
    env = task.make_env()
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    origin = dataset.provenance.path or dataset.provenance.dataset_id
    if not isinstance(act_space, gym.spaces.Box) or not isinstance(obs_space, gym.spaces.Box):
        raise DatasetError(f"env {task.env_id}: only Box observation and action spaces are supported")
    if obs_space.shape != (dataset.spec.obs_dim,):
        raise DatasetError(
            f"{origin}: observations have width {dataset.spec.obs_dim}, but env {task.env_id} "
            f"expects shape {obs_space.shape}"
        )
    if act_space.shape != (dataset.spec.action_dim,):
        raise DatasetError(
            f"{origin}: actions have width {dataset.spec.action_dim}, but env {task.env_id} "
            f"expects shape {act_space.shape}"
        )
    low, high = np.asarray(act_space.low, np.float64), np.asarray(act_space.high, np.float64)
    spec = replace(dataset.spec, action_low=tuple(low.tolist()), action_high=tuple(high.tolist()))
    return replace(dataset, spec=spec)
