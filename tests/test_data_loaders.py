"""Data layer on small files written here: D4RL HDF5 layouts, a Minari dataset made with
``minari.DataCollector``, user datasets checked against their env, transforms and the replay buffer."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from offrl_zoo.algorithm import BaseConfig
from offrl_zoo.data.buffer import make_replay_buffer
from offrl_zoo.data.dataset import Dataset, DatasetError, transitions_from_arrays
from offrl_zoo.data.loading import custom_task, load_dataset, match_env
from offrl_zoo.data.sources import load_d4rl_file, load_minari, sha256_file
from offrl_zoo.data.transforms import episode_ends, episode_returns, keep_top_trajectories, prepare

OBS, ACT = 11, 3


def reference_qlearning(arrays: dict, max_episode_steps: int) -> dict:
    """D4RL's ``qlearning_dataset(terminate_on_end=False)`` written out as its plain loop (the oracle)."""
    obs, next_obs, act, rew, done = [], [], [], [], []
    use_timeouts = "timeouts" in arrays
    episode_step = 0
    rewards = np.asarray(arrays["rewards"]).reshape(-1)
    for i in range(len(rewards) - 1):
        final = bool(arrays["timeouts"][i]) if use_timeouts else episode_step == max_episode_steps - 1
        if final:
            episode_step = 0
            continue
        if bool(arrays["terminals"][i]):
            episode_step = 0
        obs.append(arrays["observations"][i])
        next_obs.append(arrays["observations"][i + 1])
        act.append(arrays["actions"][i])
        rew.append(rewards[i])
        done.append(bool(arrays["terminals"][i]))
        episode_step += 1
    return {k: np.array(v) for k, v in dict(obs=obs, next_obs=next_obs, act=act, rew=rew, done=done).items()}


def episode_arrays(lengths: list[int], terminal_at_end: list[bool], seed: int = 0, dtype=np.float32) -> dict:
    """Flat D4RL-style arrays for episodes of the given lengths; non-terminal ends are timeouts."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    arrays = {
        "observations": rng.normal(size=(n, OBS)).astype(dtype),
        "actions": rng.uniform(-1, 1, size=(n, ACT)).astype(dtype),
        "rewards": rng.normal(size=n).astype(dtype),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
    }
    arrays["next_observations"] = np.roll(arrays["observations"], -1, axis=0)
    end = 0
    for length, terminal in zip(lengths, terminal_at_end, strict=True):
        end += length
        arrays["terminals" if terminal else "timeouts"][end - 1] = True
        arrays["next_observations"][end - 1] = rng.normal(size=OBS)  # true successor, not the next episode
    return arrays


def write_hdf5(path, arrays: dict, with_infos: bool = True) -> None:
    with h5py.File(path, "w") as fh:
        for key, value in arrays.items():
            fh.create_dataset(key, data=value)
        if with_infos:
            fh.create_dataset("infos/qpos", data=np.zeros((len(arrays["rewards"]), 6)))
            fh.create_dataset("metadata/algorithm", data="SAC")


def assert_matches_reference(data, ref: dict) -> None:
    np.testing.assert_array_equal(data["observation"].numpy(), ref["obs"].astype(np.float32))
    np.testing.assert_array_equal(data["next", "observation"].numpy(), ref["next_obs"].astype(np.float32))
    np.testing.assert_array_equal(data["action"].numpy(), ref["act"].astype(np.float32))
    np.testing.assert_array_equal(data["next", "reward"].reshape(-1).numpy(), ref["rew"].astype(np.float32))
    np.testing.assert_array_equal(data["next", "done"].reshape(-1).numpy(), ref["done"])
    assert not data["next", "truncated"].any()


# --- D4RL HDF5 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_d4rl_with_timeouts_matches_qlearning_dataset(tmp_path, dtype):
    arrays = episode_arrays([7, 5, 9, 4], [False, True, False, False], dtype=dtype)
    path = tmp_path / "d.hdf5"
    write_hdf5(path, arrays)
    ds = load_d4rl_file(path, "hopper-medium-v2", "qlearning", max_episode_steps=1000)
    assert_matches_reference(ds.data, reference_qlearning(arrays, 1000))
    assert ds.data["observation"].dtype == torch.float32
    # 25 rows: the last row has no successor, and 2 of the first 24 are timeouts
    assert len(ds) == 25 - 1 - 2
    p = ds.provenance
    assert (p.source, p.transitions, p.episodes, p.rule) == ("d4rl", len(ds), 4, "qlearning")
    assert p.sha256 == sha256_file(path) and len(p.sha256) == 64


def test_d4rl_without_timeouts_uses_the_step_counter(tmp_path):
    arrays = episode_arrays([6, 3, 8, 7], [False, True, False, True])
    del arrays["timeouts"], arrays["next_observations"]
    arrays["rewards"] = arrays["rewards"].reshape(-1, 1)  # some D4RL files store (N, 1)
    path = tmp_path / "d.hdf5"
    write_hdf5(path, arrays, with_infos=False)
    ds = load_d4rl_file(path, "x", "qlearning", max_episode_steps=5)
    ref = reference_qlearning(arrays, 5)
    assert_matches_reference(ds.data, ref)
    assert len(ds) < 23  # the counter dropped rows


def test_d4rl_next_observations_rule_keeps_every_row(tmp_path):
    arrays = episode_arrays([7, 5, 9], [False, True, False])
    path = tmp_path / "d.hdf5"
    write_hdf5(path, arrays)
    ds = load_d4rl_file(path, "x", "next_observations", max_episode_steps=1000)
    assert len(ds) == 21
    np.testing.assert_array_equal(ds.data["next", "observation"].numpy(), arrays["next_observations"])
    np.testing.assert_array_equal(ds.data["next", "truncated"].reshape(-1).numpy(), arrays["timeouts"])
    np.testing.assert_array_equal(ds.data["next", "done"].reshape(-1).numpy(), arrays["terminals"])


def test_d4rl_next_observations_rule_needs_the_field(tmp_path):
    arrays = episode_arrays([5, 5], [False, False])
    del arrays["next_observations"]
    path = tmp_path / "d.hdf5"
    write_hdf5(path, arrays)
    with pytest.raises(DatasetError, match=r"d\.hdf5.*'next_observations' is missing"):
        load_d4rl_file(path, "x", "next_observations", 1000)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.pop("actions"), r"required field 'actions' is missing \(found: "),
        (lambda a: a.__setitem__("rewards", a["rewards"][:-2]), r"'rewards' has 8 rows but 'observations' has 10"),
        (lambda a: a["observations"].__setitem__((3, 2), np.nan), r"'observations' holds NaN/Inf.*first at row 3\)"),
        (lambda a: a.__setitem__("actions", a["actions"][:, 0]), r"'actions' has shape \(10,\), expected \(N, dim\)"),
    ],
)
def test_d4rl_bad_files_name_the_file_and_field(tmp_path, mutate, message):
    arrays = episode_arrays([10], [True])
    mutate(arrays)
    path = tmp_path / "bad.hdf5"
    write_hdf5(path, arrays)
    with pytest.raises(DatasetError, match=rf"bad\.hdf5: .*{message}"):
        load_d4rl_file(path, "x", "qlearning", 1000)


def test_d4rl_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(DatasetError, match="nope.hdf5: no such file"):
        load_d4rl_file(tmp_path / "nope.hdf5", "x", "qlearning", 1000)
    text = tmp_path / "text.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(DatasetError, match="text.hdf5: not a readable HDF5 file"):
        load_d4rl_file(text, "x", "qlearning", 1000)


def test_unknown_transition_rule():
    with pytest.raises(DatasetError, match="transition rule 'sarsa' unknown"):
        transitions_from_arrays(episode_arrays([4], [True]), origin="o", rule="sarsa")


# --- user datasets and Minari ----------------------------------------------------------------------------


def test_user_hdf5_is_checked_against_its_env(tmp_path):
    arrays = episode_arrays([12, 8], [False, True])
    path = tmp_path / "mine.hdf5"
    write_hdf5(path, arrays)
    task = custom_task(str(path), "Hopper-v5")
    assert task.id == "custom:mine" and task.ref_min is None
    ds = load_dataset(task, str(path))
    assert ds.spec.obs_dim == OBS and ds.spec.action_low == (-1.0,) * ACT
    with pytest.raises(DatasetError, match=r"mine.hdf5: observations have width 11, but env HalfCheetah-v5"):
        load_dataset(custom_task(str(path), "HalfCheetah-v5"), str(path))
    with pytest.raises(DatasetError, match="--env 'Hoper-v5': not a registered Gymnasium env"):
        custom_task(str(path), "Hoper-v5")


def test_minari_dataset_made_with_data_collector(minari_dataset):
    ds = load_minari(minari_dataset)
    assert len(ds) == 60 and ds.provenance.episodes == 3 and ds.provenance.source == "minari"
    assert ds.spec.action_low == (-2.0,) and ds.spec.action_high == (2.0,)
    # each episode's last step is a truncation whose next observation is the true final observation
    truncated = ds.data["next", "truncated"].reshape(-1)
    assert truncated.sum() == 3 and truncated[19] and truncated[59]
    assert not ds.data["next", "done"].any()
    assert torch.equal(ds.data["next", "observation"][:19], ds.data["observation"][1:20])
    task = custom_task(f"minari:{minari_dataset}", "Pendulum-v1")
    assert load_dataset(task, f"minari:{minari_dataset}").spec.obs_dim == 3


def test_a_minari_dataset_is_evaluated_in_the_env_it_records(minari_dataset, tmp_path, capsys):
    """No --env needed: train takes the env (and its episode limit) from the dataset; data info reads it."""
    import json

    from offrl_zoo.cli import main

    task = custom_task(f"minari:{minari_dataset}", None)
    assert (task.env_id, task.horizon) == (f"minari:{minari_dataset}", 20)
    env = task.make_env()
    assert env.spec is not None and env.spec.id == "Pendulum-v1"
    env.close()
    out = tmp_path / "runs"
    argv = ["train", "bc", "--dataset", f"minari:{minari_dataset}", "--steps", "5", "--eval-every", "5"]
    assert main([*argv, "--eval-episodes", "2", "--out", str(out), "--no-progress", "batch_size=16"]) == 0
    run_dir = out / "bc" / "custom_pendulum-tiny-v0" / "seed0"
    assert json.loads((run_dir / "eval.jsonl").read_text())["protocol"]["horizon"] == 20
    capsys.readouterr()
    assert main(["data", "info", f"minari:{minari_dataset}"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["env"], info["rows"], info["transitions"], info["episodes"]) == ("Pendulum-v1", 60, 60, 3)
    assert main(["data", "verify", f"minari:{minari_dataset}"]) == 0
    assert "60 rows -> 60 transitions (next_observations rule), 3 episodes (3 complete)" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="a file records no env; give --env"):
        custom_task("data.hdf5", None)


def test_minari_unknown_id_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(DatasetError, match="minari:nobody/nothing-v0: cannot load"):
        load_minari("nobody/nothing-v0")


def test_match_env_rejects_wrong_action_width(tmp_path):
    arrays = episode_arrays([6], [True])
    arrays["actions"] = arrays["actions"][:, :2]
    path = tmp_path / "w.hdf5"
    write_hdf5(path, arrays)
    ds = load_d4rl_file(path, "x", "qlearning", 1000)
    with pytest.raises(DatasetError, match=r"actions have width 2, but env Hopper-v5 expects shape \(3,\)"):
        match_env(ds, custom_task(str(path), "Hopper-v5"))


# --- transforms -----------------------------------------------------------------------------------------


def dataset_of(arrays: dict, rule: str = "next_observations") -> Dataset:
    from offrl_zoo.data.dataset import Provenance, spec_from

    data = transitions_from_arrays(arrays, origin="mem", rule=rule)
    return Dataset(data, spec_from(data), Provenance("file", "mem", None, "0" * 64, len(data), 0, rule))


def test_episode_splits_gap_and_fixed():
    arrays = episode_arrays([4, 6, 3], [True, False, False])
    ds = dataset_of(arrays)
    gap = episode_ends(ds.data, "gap")
    assert gap.nonzero().reshape(-1).tolist() == [3, 9, 12]
    fixed = episode_ends(ds.data, "fixed_1000", max_episode_steps=5)
    assert fixed.nonzero().reshape(-1).tolist() == [3, 8]  # the trailing partial episode is left open (CORL)
    returns = episode_returns(ds.data["next", "reward"].reshape(-1), gap)
    expected = [arrays["rewards"][a:b].astype(np.float64).sum() for a, b in ((0, 4), (4, 10), (10, 13))]
    np.testing.assert_allclose(returns.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("split", ["gap", "fixed_1000"])
def test_return_range_scales_the_spread_of_returns_to_1000(split):
    arrays = episode_arrays([5, 5, 5, 5], [True] * 4)
    ds = dataset_of(arrays)
    cfg = BaseConfig(reward_transform="return_range", episode_split=split)
    out, record = prepare(ds, cfg)
    returns = episode_returns(out.data["next", "reward"].reshape(-1), episode_ends(out.data, split))
    assert float(returns.max() - returns.min()) == pytest.approx(1000.0, rel=1e-5)
    assert record["episode_split"] == split
    assert torch.equal(ds.data["next", "reward"], dataset_of(arrays).data["next", "reward"])  # input untouched


def test_reward_transforms_and_observation_normalisation():
    ds = dataset_of(episode_arrays([8, 8], [True, False]))
    r = ds.data["next", "reward"]
    out, _ = prepare(ds, BaseConfig(reward_transform="minus_one"))
    assert torch.allclose(out.data["next", "reward"], r - 1)
    out, _ = prepare(ds, BaseConfig(reward_transform="dql_antmaze"))
    assert torch.allclose(out.data["next", "reward"], (r - 0.5) * 4)
    out, record = prepare(ds, BaseConfig(normalize_obs=True, obs_norm_eps=1e-3))
    obs = ds.data["observation"]
    loc, scale = obs.mean(0), obs.std(0, unbiased=False) + 1e-3
    assert torch.allclose(out.data["observation"], (obs - loc) / scale)
    assert torch.allclose(out.data["next", "observation"], (ds.data["next", "observation"] - loc) / scale)
    assert torch.allclose(torch.as_tensor(out.spec.obs_loc, dtype=torch.float32), loc)
    assert record["normalize_obs"] == {"eps": 1e-3}


def test_keep_top_trajectories_orders_by_return():
    arrays = episode_arrays([3, 3, 3, 3], [True] * 4)
    arrays["rewards"] = np.repeat([1.0, 4.0, 2.0, 3.0], 3).astype(np.float32)
    data = dataset_of(arrays).data
    top = keep_top_trajectories(data, 0.5, discount=1.0)
    assert top["next", "reward"].reshape(-1).tolist() == [4.0] * 3 + [3.0] * 3


def test_clip_actions():
    ds = dataset_of(episode_arrays([6], [True]))
    out, _ = prepare(ds, BaseConfig(clip_actions=0.5))
    assert out.data["action"].abs().max() <= 0.5


# --- replay buffer ---------------------------------------------------------------------------------------


def test_replay_buffer_is_reproducible_and_shuffled_covers_each_row_once():
    data = dataset_of(episode_arrays([10, 10], [True, True])).data
    data["index"] = torch.arange(len(data))

    def draws(sampling: str, n: int) -> list[list[int]]:
        rb = make_replay_buffer(data, 4, sampling, torch.Generator().manual_seed(7))
        return [rb.sample()["index"].tolist() for _ in range(n)]

    assert draws("uniform", 5) == draws("uniform", 5)
    epoch = draws("shuffled", 5)
    assert sorted(sum(epoch, [])) == list(range(20))
    assert all(len(batch) == 4 for batch in draws("shuffled", 12))  # static shape across passes
    with pytest.raises(ValueError, match="batch_size=64 is larger than the dataset"):
        make_replay_buffer(data, 64, "uniform", torch.Generator())
    with pytest.raises(ValueError, match="sampling='random'"):
        make_replay_buffer(data, 4, "random", torch.Generator())
