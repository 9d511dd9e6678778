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
def record_minari(tmp_path, monkeypatch):
    """``record(dataset_id, env, episodes)``: random-action episodes recorded with ``minari.DataCollector``
    into a private Minari root (``MINARI_DATASETS_PATH``), under any id, e.g. a real D4RL one."""
    minari = pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))

    def record(dataset_id: str, env: gym.Env, episodes: int = 2) -> str:
        collector = minari.DataCollector(env)
        collector.action_space.seed(0)
        for episode in range(episodes):
            collector.reset(seed=episode)
            finished = False
            while not finished:
                _, _, terminated, truncated, _ = collector.step(collector.action_space.sample())
                finished = terminated or truncated
        with pytest.warns(UserWarning):  # minari asks for author/description metadata
            collector.create_dataset(dataset_id=dataset_id, algorithm_name="random")
        collector.close()
        return dataset_id

    return record


@pytest.fixture
def minari_dataset(record_minari):
    """A 3-episode Pendulum dataset in a private Minari root."""
    return record_minari("offrlzoo/pendulum-tiny-v0", gym.make("Pendulum-v1", max_episode_steps=20), episodes=3)
