"""The AntMaze, Adroit-pen and Kitchen suites: D4RL task ids backed by Minari's regenerated datasets,
usable as soon as the dataset is on disk; here tiny datasets are recorded under the same ids."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

from offrl_zoo.cli import main
from offrl_zoo.data.loading import load_dataset
from offrl_zoo.envs.tasks import get_suite, get_task
from offrl_zoo.errors import DatasetError
from offrl_zoo.train import RunRequest, train

robotics = pytest.importorskip("gymnasium_robotics")
gym.register_envs(robotics)


def test_suites_are_registered_with_d4rl_reference_scores():
    assert get_suite("antmaze") == tuple(
        f"antmaze-{n}-v2"
        for n in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")
    )
    assert get_suite("adroit-pen") == ("pen-human-v1", "pen-cloned-v1", "pen-expert-v1")
    assert get_suite("kitchen") == ("kitchen-complete-v0", "kitchen-partial-v0", "kitchen-mixed-v0")
    umaze, large, pen, kitchen = (
        get_task(t) for t in ("antmaze-umaze-v2", "antmaze-large-play-v2", "pen-cloned-v1", "kitchen-mixed-v0")
    )
    assert (umaze.horizon, large.horizon, pen.horizon, kitchen.horizon) == (700, 1000, 100, 280)
    assert (umaze.ref_min, umaze.ref_max, kitchen.ref_max) == (0.0, 1.0, 4.0)
    assert (pen.ref_min, pen.ref_max) == (96.262799, 3076.8331017826877)
    assert {t.eval_episodes for t in (umaze, pen, kitchen)} == {100}
    assert umaze.source_id == "minari:D4RL/antmaze/umaze-v1" and pen.source_id == "minari:D4RL/pen/cloned-v2"


def test_missing_data_says_how_to_get_it(record_minari):
    with pytest.raises(DatasetError, match=r"minari download D4RL/antmaze/medium-play-v1"):
        load_dataset(get_task("antmaze-medium-play-v2"), download=False)


def test_antmaze_trains_and_evaluates_with_d4rl_success_protocol(record_minari, tmp_path):
    record_minari(
        "D4RL/antmaze/umaze-v1",
        gym.make("AntMaze_UMaze-v4", continuing_task=True, reset_target=False, max_episode_steps=25),
    )
    task = get_task("antmaze-umaze-v2")
    dataset = load_dataset(task, download=False)
    assert len(dataset) == 50 and dataset.spec.obs_dim == 31  # goal (2) + position (2) + ant state (27)
    env = task.make_env()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (31,) and env.unwrapped.continuing_task is False and env.spec.max_episode_steps == 700
    env.close()
    request = RunRequest(
        "bc",
        task=task.id,
        steps=5,
        eval_every=5,
        eval_episodes=2,
        download=False,
        overrides=["hidden=[16]", "batch_size=32"],
    )
    run = train(request, run_dir=tmp_path / "run", progress=False)
    final = json.loads((run / "done").read_text())["final_eval"]
    assert final["score_mean"] in (0.0, 50.0, 100.0)  # each episode: 0 or 1 (reached the goal)


def test_pen_dataset_loads_and_matches_its_env(record_minari, capsys):
    record_minari("D4RL/pen/human-v2", gym.make("AdroitHandPen-v1", max_episode_steps=10))
    task = get_task("pen-human-v1")
    dataset = load_dataset(task, download=False)
    assert len(dataset) == 20 and dataset.spec.obs_dim == 45 and dataset.spec.action_dim == 24
    env = task.make_env()
    assert env.spec.max_episode_steps == 100
    env.close()
    assert main(["data", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows["pen-human-v1"].split()[-1] == "yes" and "minari download D4RL/pen/cloned-v2" in rows["pen-cloned-v1"]
