"""The one place Gymnasium envs are made: ``gym.make`` with MuJoCo's known-harmless messages filtered out.

Gymnasium's ``half_cheetah.xml`` uses a compiler attribute that MuJoCo 3.3+ calls deprecated, and MuJoCo
prints that to stderr (and MUJOCO_LOG.TXT) for every env it compiles: 16 times per vector env, thousands
of lines per dataset. Users cannot act on it, so it is dropped; every other MuJoCo warning goes to stderr
in MuJoCo's own format (but no longer to MUJOCO_LOG.TXT).
"""

from __future__ import annotations

import functools
import sys

import gymnasium as gym

KNOWN_HARMLESS = ("compiler attribute 'settotalmass' is deprecated",)


def make(env_id: str, **kwargs) -> gym.Env:
    filter_mujoco_warnings()
    return gym.make(env_id, **kwargs)


def box(space: gym.Space) -> gym.spaces.Box:
    """``space`` as a Box (the observation and action spaces of the MuJoCo locomotion envs)."""
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"expected a Box space, got {space}")
    return space


@functools.cache
def filter_mujoco_warnings() -> None:
    """Install the filter once per process (also for envs that other libraries make, e.g. Minari)."""
    try:
        import mujoco
    except ImportError:
        return
    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if message.startswith(KNOWN_HARMLESS):
            return
        if previous is not None:
            previous(message)
        else:
            sys.stderr.write(f"WARNING: {message}\n")

    mujoco.set_mju_user_warning(handler)
