"""Shared fixtures. The example plugin (tests/plugin_pkg) must be installed for the plugin tests; the
README's test command installs it, and this hook installs it into the running environment if a plain
`pytest` is run without it, so the conformance suite always covers a real third-party package."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import gymnasium as gym
import pytest

PLUGIN_DIR = Path(__file__).parent / "plugin_pkg"


def pytest_configure(config: pytest.Config) -> None:
    if not any(ep.name == "mlbc" for ep in entry_points(group="offrl_zoo.algorithms")):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(PLUGIN_DIR)],
            check=True,
        )
        importlib.invalidate_caches()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run on 2-core CI machines: one torch thread avoids oversubscription."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def minari_dataset(tmp_path, monkeypatch):
    """A 3-episode Pendulum dataset recorded with ``minari.DataCollector`` into a private Minari root."""
    minari = pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=20))
    env.action_space.seed(0)
    for episode in range(3):
        env.reset(seed=episode)
        finished = False
        while not finished:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            finished = terminated or truncated
    with pytest.warns(UserWarning):  # minari nags about author/description metadata
        env.create_dataset(dataset_id="offrlzoo/pendulum-tiny-v0", algorithm_name="random")
    env.close()
    return "offrlzoo/pendulum-tiny-v0"
