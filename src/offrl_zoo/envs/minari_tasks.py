"""The D4RL AntMaze, Adroit-pen and Kitchen tasks, backed by their maintained successors on Minari.

D4RL's own files for these domains can only be evaluated in D4RL's mujoco-py envs: the
Gymnasium-Robotics ports use other maze coordinates and other kitchen observations. So each task
keeps its D4RL id (so algorithms' per-task settings apply), takes its data from the Minari dataset
regenerated in Gymnasium-Robotics (``D4RL/antmaze/umaze-v1``, ...), and is evaluated in the env that the
dataset itself records. D4RL's evaluation protocol is restored on top of it:
- AntMaze: the episode ends at the goal with a reward of 1 (``continuing_task=False``), so a return is
  0 or 1 as in D4RL. The Minari data was collected with a goal that stays put and keeps paying.
- Pen: 100-step episodes (D4RL's horizon, which its reference scores assume). The Minari data has
  200-step episodes.
- Kitchen: each task pays once and the episode ends when all four are done (the env's defaults), so a
  return is 0–4 as in D4RL.
Dict observations are flattened in the order of the dataset's observation space. The data is downloaded
when it is missing and the run may go online (``train --offline`` forbids it), or fetched beforehand with
``minari download D4RL/...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from offrl_zoo.envs.make import filter_mujoco_warnings
from offrl_zoo.errors import DatasetError

if TYPE_CHECKING:
    from offrl_zoo.envs.tasks import Task

ANTMAZE = ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")
PEN = ("human", "cloned", "expert")
KITCHEN = ("complete", "partial", "mixed")

# task id → (Minari id, horizon, D4RL reference min/max, eval-env overrides); docs/reference.md §1.1 and §1.3.
MINARI_TASKS: dict[str, tuple[str, int, float, float, dict]] = {
    **{
        f"antmaze-{name}-v2": (
            f"D4RL/antmaze/{name}-v1",
            700 if name.startswith("umaze") else 1000,
            0.0,
            1.0,
            {"continuing_task": False},
        )
        for name in ANTMAZE
    },
    **{f"pen-{name}-v1": (f"D4RL/pen/{name}-v2", 100, 96.262799, 3076.8331017826877, {}) for name in PEN},
    **{
        f"kitchen-{name}-v0": (
            f"D4RL/kitchen/{name}-v2",
            280,
            0.0,
            4.0,
            {"remove_task_when_completed": True, "terminate_on_tasks_completed": True},
        )
        for name in KITCHEN
    },
}
SUITES = {
    "antmaze": [f"antmaze-{n}-v2" for n in ANTMAZE],
    "adroit-pen": [f"pen-{n}-v1" for n in PEN],
    "kitchen": [f"kitchen-{n}-v0" for n in KITCHEN],
}


def flatten(space: gym.Space, value: object, rows: int | None = None) -> np.ndarray:
    """A (possibly nested) Dict observation as one float array, keys in the space's order; only the keys
    of ``space`` are taken (a Kitchen env reports more goals than its dataset keeps).

    ``rows``: a batch of that many observations (arrays with a leading axis), else one observation.
    """
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(value, Mapping):
            raise TypeError(f"a Dict-space observation must be a mapping, got {type(value).__name__}")
        parts = [flatten(sub, value[key], rows) for key, sub in space.spaces.items()]
        return np.concatenate(parts, axis=-1)
    array = np.asarray(value, dtype=np.float64)
    return array.reshape(rows, -1) if rows is not None else array.reshape(-1)


class FlattenLike(gym.ObservationWrapper):
    """Flattens an env's Dict observations exactly as its dataset's observations are flattened."""

    def __init__(self, env: gym.Env, space: gym.Space) -> None:
        super().__init__(env)
        self.dataset_space = space
        width = gym.spaces.flatdim(space)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (width,), np.float64)

    def observation(self, observation: object) -> np.ndarray:
        return flatten(self.dataset_space, observation)


def load_minari_dataset(dataset_id: str, download: bool = False):
    import minari

    try:
        return minari.load_dataset(dataset_id, download=download)
    except Exception as err:  # minari raises plain FileNotFoundError/ValueError with its own wording
        hint = "" if download else f"; get it with `minari download {dataset_id}` or pass --download"
        raise DatasetError(f"minari:{dataset_id}: cannot load ({err}){hint}") from err


def make_eval_env(task: Task) -> gym.Env:
    """The env recorded in the task's Minari dataset (its eval spec when it has one), with D4RL's
    protocol restored (module docstring) and Dict observations flattened like the data."""
    dataset_id = task.source_id.removeprefix("minari:")
    ds = load_minari_dataset(dataset_id)
    recorded = ds.spec.env_spec
    if recorded is None or recorded.id not in gym.registry:  # Gymnasium-Robotics envs (AntMaze, pen, kitchen)
        _register_robotics()
    filter_mujoco_warnings()
    try:
        env = ds.recover_environment(eval_env=True, max_episode_steps=task.horizon, **dict(task.env_kwargs))
    except Exception as err:  # e.g. FrankaKitchen-v1 fails to compile its model with mujoco 4.x
        raise DatasetError(
            f"{task.id}: cannot build the evaluation env of minari:{dataset_id} "
            f"({type(err).__name__}: {err}); FrankaKitchen-v1 is known to need mujoco 3.3.x"
        ) from err
    space = ds.observation_space
    return FlattenLike(env, space) if isinstance(space, gym.spaces.Dict) else env


def _register_robotics() -> None:
    try:
        import gymnasium_robotics
    except ImportError as err:
        raise DatasetError(
            "AntMaze/Adroit/Kitchen tasks need Gymnasium-Robotics: pip install 'offrl-zoo[robotics]'"
        ) from err
    gym.register_envs(gymnasium_robotics)


def task_kwargs() -> Mapping[str, dict]:
    """Keyword arguments of ``Task`` for each registered Minari-backed D4RL task."""
    out = {}
    for task_id, (minari_id, horizon, ref_min, ref_max, overrides) in MINARI_TASKS.items():
        out[task_id] = dict(
            id=task_id,
            env_id=f"minari:{minari_id}",
            horizon=horizon,
            ref_min=ref_min,
            ref_max=ref_max,
            eval_episodes=100,
            source="minari",
            source_id=f"minari:{minari_id}",
            env_kwargs=overrides,
            note=f"data: Minari {minari_id} (D4RL's dataset regenerated in Gymnasium-Robotics); evaluated in the "
            "env the dataset records, with D4RL's protocol restored; D4RL reference scores",
        )
    return out
