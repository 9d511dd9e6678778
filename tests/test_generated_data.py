"""Generated D4RL-style datasets: deterministic, D4RL layout, cached with a hash, regenerated when corrupt,
and picked by D4RL tasks when no real file is available (saying so)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from offrl_zoo.cli import main
from offrl_zoo.data.generation import datasets as generated
from offrl_zoo.data.generation.online import BehaviourRun, train_behaviour
from offrl_zoo.data.generation.sac import SACConfig
from offrl_zoo.data.generation.shipped import export_policies
from offrl_zoo.data.inspect import describe_file
from offrl_zoo.data.loading import load_dataset
from offrl_zoo.data.sources import load_d4rl_file, sha256_file
from offrl_zoo.envs import get_task
from offrl_zoo.errors import DatasetError

SIZE = 1200


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    """A tiny SAC run on Hopper exported as the 'shipped' hopper policies (any return counts as medium)."""
    root = tmp_path_factory.mktemp("behaviour")
    run = train_behaviour(
        BehaviourRun(
            "Hopper-v5",
            root / "run",
            seed=1,
            total_steps=300,
            snapshot_every=100,
            checkpoint_every=100,
            eval_episodes=2,
        ),
        SACConfig(hidden=(32, 32), start_steps=100, batch_size=64),
        progress=False,
    )
    export_policies(run, "hopper", root / "policies", medium_range=(-1e9, 1e9))
    return root / "policies"


@pytest.fixture
def env(policies, tmp_path, monkeypatch):
    monkeypatch.setenv("OFFRL_ZOO_POLICIES", str(policies))
    monkeypatch.setenv("OFFRL_ZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("task", ["hopper-medium-v2", "hopper-medium-replay-v2", "hopper-random-v2"])
def test_generation_is_deterministic_and_loads_as_d4rl(env, tmp_path, task):
    first = generated.ensure_generated(task, size=SIZE, progress=False, log=lambda m: None)
    second = generated.generate(task, tmp_path / "again.hdf5", size=SIZE, progress=False, log=lambda m: None)
    assert sha256_file(first) == second["sha256"]
    with h5py.File(first) as fh:
        for key in (
            "observations",
            "actions",
            "rewards",
            "terminals",
            "timeouts",
            "next_observations",
            "infos/action_log_probs",
            "infos/qpos",
            "infos/qvel",
            "metadata/algorithm",
        ):
            assert key in fh, key
        assert len(fh["rewards"]) == SIZE and fh["terminals"].dtype == bool
        assert ("metadata/policy/last_fc_log_std/weight" in fh) == (task == "hopper-medium-v2")
        ends = fh["terminals"][()] | fh["timeouts"][()]
        assert not ends[-1] or ends.sum() > 0  # the last episode may be cut without a flag, as in D4RL
    ds = load_d4rl_file(first, task, "qlearning", 1000)
    info = describe_file(first)
    # qlearning drops the last row and each timeout row; terminal rows stay as done
    assert len(ds) == SIZE - 1 - info["timeouts"] + int(bool(h5py.File(first)["timeouts"][-1]))
    assert int(ds.data["next", "done"].sum()) == info["terminals"] - int(bool(h5py.File(first)["terminals"][-1]))
    assert info["episodes"] > 0 and np.isfinite(info["return"]["mean"])


def test_medium_expert_is_medium_then_expert(env):
    path = generated.ensure_generated("hopper-medium-expert-v2", size=SIZE, progress=False, log=lambda m: None)
    half = {
        k: generated.ensure_generated(f"hopper-{k}-v2", size=SIZE // 2, progress=False, log=lambda m: None)
        for k in ("medium", "expert")
    }
    with h5py.File(path) as fh, h5py.File(half["medium"]) as m, h5py.File(half["expert"]) as e:
        ends = np.flatnonzero(m["terminals"][()] | m["timeouts"][()])
        assert ends[-1] < SIZE // 2 - 1  # the medium half ends with a cut episode, so the join is exercised
        keep = ends[-1] + 1  # as D4RL, that cut episode is not glued onto the first expert episode
        for key in ("observations", "rewards", "terminals", "timeouts"):
            np.testing.assert_array_equal(fh[key][()], np.concatenate([m[key][:keep], e[key]]), err_msg=key)
    assert (
        describe_file(path)["complete_episodes"]
        == describe_file(half["medium"])["complete_episodes"] + describe_file(half["expert"])["complete_episodes"]
    )


def test_default_medium_expert_reuses_the_cached_medium_and_expert_files(env, monkeypatch):
    """At D4RL's sizes medium-expert is built from the medium and expert files a user already made."""
    monkeypatch.setattr(generated, "SIZES", {"random": SIZE, "medium": SIZE, "expert": SIZE})
    made = {
        k: generated.ensure_generated(f"hopper-{k}-v2", progress=False, log=lambda m: None)
        for k in ("medium", "expert")
    }
    messages: list[str] = []
    generated.ensure_generated("hopper-medium-expert-v2", progress=False, log=messages.append)
    assert not any("hopper-medium-v2" in m or "hopper-expert-v2" in m for m in messages), messages
    assert sorted(p.name for p in env.glob("generated/*.hdf5")) == sorted(
        [made["medium"].name, made["expert"].name, "hopper-medium-expert-v2.hdf5"]
    )


def test_corrupt_cache_is_detected_and_regenerated(env):
    messages: list[str] = []
    path = generated.ensure_generated("hopper-random-v2", size=SIZE, progress=False, log=messages.append)
    digest = sha256_file(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert generated.ensure_generated("hopper-random-v2", size=SIZE, progress=False, log=messages.append) == path
    assert any("does not match" in m for m in messages)
    assert sha256_file(path) == digest


def test_d4rl_task_falls_back_to_generated_data_and_says_so(env, monkeypatch):
    monkeypatch.setitem(generated.SIZES, "medium", SIZE)
    messages: list[str] = []
    ds = load_dataset(get_task("hopper-medium-v2"), download=False, log=messages.append)
    assert ds.provenance.source == "generated"
    assert "offrl-zoo from policy hopper/medium" in ds.provenance.extra["generated_by"]
    assert any("using data generated by offrl-zoo" in m for m in messages)
    with pytest.raises(DatasetError, match="download is disabled"):
        load_dataset(get_task("hopper-medium-v2"), download=False, data_source="d4rl")


def test_missing_policy_is_a_clear_error(env):
    with pytest.raises(DatasetError, match="no shipped 'medium' behaviour policy for walker2d"):
        generated.ensure_generated("walker2d-medium-v2", size=SIZE, progress=False)
    with pytest.raises(DatasetError, match="cannot be generated"):
        generated.parse_task("hopper-full-replay-v2")


def test_data_cli_make_info_verify_import(env, tmp_path, capsys):
    assert main(["data", "make", "hopper-random-v2", "--size", str(SIZE), "--no-progress"]) == 0
    made = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["data", "info", made]) == 0
    info = json.loads(capsys.readouterr().out)
    assert main(["data", "verify", made, "--env", "Hopper-v5"]) == 0
    verified = capsys.readouterr().out
    assert "matches Hopper-v5" in verified
    # one counting rule: verify's line states info's counts, and training loads info's transitions
    cut = info["episodes"] - info["complete_episodes"]
    assert info["rows"] == SIZE and cut in (0, 1) and (cut == 1) == (info["trailing_cut_rows"] > 0)
    assert f"{info['rows']:,} rows -> {info['transitions']:,} transitions (qlearning rule)" in verified
    assert f"{info['episodes']:,} episodes ({info['complete_episodes']:,} complete" in verified
    loaded = load_d4rl_file(made, "t", "qlearning", 1000)
    assert (len(loaded), loaded.provenance.episodes) == (info["transitions"], info["episodes"])
    assert main(["data", "verify", made, "--env", "HalfCheetah-v5"]) == 2
    assert "expects shape (17,)" in capsys.readouterr().err
    assert main(["data", "import", made, "--task", "hopper-random-v2"]) == 0
    assert (env / "d4rl" / "hopper-random-v2.hdf5").is_file()
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    assert "hopper-random-v2" in listing and "cached" in listing


def test_shipped_halfcheetah_policy_generates_a_deterministic_d4rl_file(tmp_path, monkeypatch):
    """The real shipped medium policy: 3 000 steps = three 1 000-step episodes ending in timeouts."""
    monkeypatch.delenv("OFFRL_ZOO_POLICIES", raising=False)
    monkeypatch.setenv("OFFRL_ZOO_CACHE", str(tmp_path / "cache"))
    first = generated.ensure_generated("halfcheetah-medium-v2", size=3000, progress=False, log=lambda m: None)
    again = generated.generate(
        "halfcheetah-medium-v2", tmp_path / "again.hdf5", size=3000, progress=False, log=lambda m: None
    )
    assert sha256_file(first) == again["sha256"]
    with h5py.File(first) as fh:
        assert np.flatnonzero(fh["timeouts"][()]).tolist() == [999, 1999, 2999]
        assert not fh["terminals"][()].any() and fh["metadata/iteration"][()] == 100_000
    ds = load_d4rl_file(first, "halfcheetah-medium-v2", "qlearning", 1000)
    assert len(ds) == 3000 - 3  # D4RL drops every timeout row (the last one is also the file's last row)
    assert not ds.data["next", "done"].any()
    assert describe_file(first)["return"]["mean"] > 3000  # the medium policy runs, not a random one
