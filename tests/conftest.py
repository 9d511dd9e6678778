"""Shared fixtures. The conformance suite always covers a real third-party package: the example plugin
in tests/plugin_pkg. The README's test command installs it; when a plain `pytest` runs without it, the
plugin is made importable and its entry point discoverable for this session only, nothing installed."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from importlib.metadata import entry_points
from pathlib import Path

import gymnasium as gym
import pytest

PLUGIN_DIR = Path(__file__).parent / "plugin_pkg"

# A suite started as a background job (`cmd &` in a script) inherits SIGINT ignored, and so would every
# run it starts: the Ctrl-C tests would then see Ctrl-C ignored. Python's own handler is restored for the
# session; children then start with the default disposition, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
_added_paths: list[str] = []


def _plugin_metadata(root: Path) -> list[str]:
    """A ``*.dist-info`` folder under ``root`` that importlib.metadata reads as the installed plugin:
    its name, version and entry points, from the plugin's own pyproject.toml. Returns the sys.path
    entries that make the plugin visible (the metadata folder, then the plugin's source)."""
    project = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())["project"]
    info = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for g, eps in groups.items())
    )
    return [str(root), str(PLUGIN_DIR)]


def pytest_configure(config: pytest.Config) -> None:
    # Here rather than in a fixture: the conformance tests are parametrised over the registry at collection.
    if any(ep.name == "mlbc" for ep in entry_points(group="offrl_zoo.algorithms")):
        return  # installed: use it as is
    _added_paths[:] = _plugin_metadata(Path(tempfile.mkdtemp(prefix="offrl-zoo-plugin-")))
    sys.path[:0] = _added_paths
    # The CLI tests run the package in subprocesses, which inherit the environment.
    os.environ["PYTHONPATH"] = os.pathsep.join([*_added_paths, *filter(None, [os.environ.get("PYTHONPATH")])])
    importlib.invalidate_caches()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _added_paths:
        shutil.rmtree(_added_paths[0], ignore_errors=True)


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


@pytest.fixture
def interrupted(monkeypatch) -> Callable[[int], AbstractContextManager[None]]:
    """``with interrupted(step): train(...)``: the run is stopped by Ctrl-C (``KeyboardInterrupt``) when update
    ``step`` (0-based) is done, before it is logged or checkpointed; the block expects the interruption."""
    from offrl_zoo.train import Trainer  # noqa: PLC0415

    @contextmanager
    def at(step: int) -> Iterator[None]:
        after_step = Trainer.after_step

        def stop(self, run, done, metrics):
            if done == step:
                raise KeyboardInterrupt
            return after_step(self, run, done, metrics)

        with monkeypatch.context() as patch:
            patch.setattr(Trainer, "after_step", stop)
            with pytest.raises(KeyboardInterrupt):
                yield

    return at
