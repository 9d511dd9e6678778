"""Task registry, reference scores and the toy bandits."""

from __future__ import annotations

import numpy as np
import pytest

from offrl_zoo.envs import get_task, toy
from offrl_zoo.errors import UnknownNameError


def test_d4rl_reference_scores_and_env():
    task = get_task("hopper-medium-v2")
    assert (task.ref_min, task.ref_max, task.horizon, task.eval_episodes) == (-20.272305, 3234.3, 1000, 10)
    assert task.normalized_score(np.array([3234.3, -20.272305])).tolist() == pytest.approx([100.0, 0.0])
    env = task.make_env()
    assert env.observation_space.shape == (11,) and env.action_space.shape == (3,)
    env.close()
    assert get_task("walker2d-expert-v2").ref_max == 4592.3
    assert get_task("halfcheetah-random-v2").ref_min == -280.178953


def test_unknown_task_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'hopper-medium-v2'"):
        get_task("hoper-medium-v2")


def test_25_gaussian_data():
    data = toy.toy_data("25_gaussian", "far")
    actions = data["actions"]
    assert actions.shape == (10_000, 2) and (data["observations"] == 0).all()
    nearest = np.linalg.norm(actions[:, None] - toy.gaussian_grid_means()[None], axis=-1).argmin(1)
    assert np.bincount(nearest, minlength=25).tolist() == [400] * 25
    np.testing.assert_allclose(data["rewards"], np.linalg.norm(actions, axis=1), rtol=1e-6)
    assert not data["terminals"].any()


def test_rewards_near_and_hard():
    near = toy.toy_data("25_gaussian", "near")
    rho = np.linalg.norm(near["actions"], axis=1)
    np.testing.assert_allclose(near["rewards"], rho.max() - rho, rtol=1e-5, atol=1e-5)
    hard = toy.toy_data("25_gaussian", "hard")
    corner = (hard["actions"][:, 0] < -7.5) & (hard["actions"][:, 1] > 7.5)
    assert corner.sum() == 400
    np.testing.assert_allclose(hard["rewards"][corner], 2 * rho[corner], rtol=1e-5)


def test_swiss_roll_shape():
    actions = toy.toy_data("swiss_roll_2D", "far")["actions"]
    radius = np.linalg.norm(actions, axis=1)
    assert 1.5 * np.pi - 0.5 < radius.min() and radius.max() < 4.5 * np.pi + 0.5


def test_toy_env_pays_the_dataset_reward():
    task = get_task("toy-25_gaussian-hard")
    env = task.make_env()
    data = toy.toy_data("25_gaussian", "hard")
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [0.0]
    for i in (0, 123, 9_999):
        _, reward, terminated, truncated, _ = env.step(data["actions"][i])
        assert reward == pytest.approx(float(data["rewards"][i]), rel=1e-5) and terminated
        env.reset()
    assert task.ref_max == pytest.approx(float(data["rewards"].max()))


def test_suites_list_registered_tasks():
    from offrl_zoo.envs import all_suites, get_suite

    assert get_suite("gym-medium") == ("hopper-medium-v2", "halfcheetah-medium-v2", "walker2d-medium-v2")
    assert len(get_suite("gym")) == 9 and set(get_suite("gym-medium")) < set(get_suite("gym"))
    assert all(t.startswith("toy-") for t in all_suites()["toy"])
    with pytest.raises(UnknownNameError, match="Did you mean 'gym-medium'"):
        get_suite("gym-mediun")


def test_locomotion_tasks_record_returns_measured_in_v5_next_to_d4rl_constants():
    from offrl_zoo import registry
    from offrl_zoo.testing import make
    from offrl_zoo.train.evaluator import Evaluator

    task = get_task("hopper-medium-v2")
    random = task.measured_refs["random"]
    assert 0 < random["return_mean"] < 100 and random["episodes"] > 1000  # uniform actions fall fast
    protocol = Evaluator(task, 10, 0, True).protocol(make(registry.get("bc")))
    assert protocol["reference_returns"]["min"] == task.ref_min
    assert protocol["reference_returns"]["measured_in_eval_env"]["random"] == random


@pytest.mark.parametrize("domain", ["hopper", "halfcheetah", "walker2d"])
def test_every_shipped_expert_has_its_v5_return_recorded(domain):
    from offrl_zoo.data.generation.shipped import PACKAGE_POLICIES, shipped_policies

    policies = shipped_policies(domain, PACKAGE_POLICIES)
    refs = get_task(f"{domain}-expert-v2").measured_refs
    assert ("expert" in refs) == ("expert" in policies)
    if "expert" in policies:
        assert refs["expert"]["return_mean"] > policies["medium"].meta["return_stochastic"]["mean"]
        assert refs["expert"]["episodes"] >= 1000  # measured on the generated 1 M-step expert file


def test_mujoco_deprecation_noise_is_dropped_and_other_warnings_pass(capfd):
    import mujoco

    from offrl_zoo.envs.make import make

    make("HalfCheetah-v5").close()  # Gymnasium's half_cheetah.xml sets the deprecated settotalmass
    assert "settotalmass" not in capfd.readouterr().err
    mujoco.get_mju_user_warning()("some other MuJoCo warning")
    assert "WARNING: some other MuJoCo warning" in capfd.readouterr().err


def test_policies_evaluated_together_score_what_each_scores_alone():
    """Two sampled policies on hopper (episodes of different lengths, two rounds of envs), their episode
    seeds apart: each policy's returns, lengths and random draws match its evaluation alone, although the
    batch keeps asking a policy for actions after its own episodes ended."""
    import torch

    from offrl_zoo.train.evaluator import Evaluator, evaluate_together

    task = get_task("hopper-medium-v2")
    evaluators = [Evaluator(task, 4, seed, False, num_envs=2) for seed in (100, 101)]

    def noisy(obs: torch.Tensor, streams: list[torch.Generator]) -> torch.Tensor:
        noise = torch.stack([torch.randn(obs.shape[1], 3, generator=g) for g in streams])
        return torch.tanh(0.1 * obs[..., :3] + noise)

    def generators(seeds) -> list[torch.Generator]:
        return [torch.Generator().manual_seed(s) for s in seeds]

    streams = generators([7, 8])
    together = evaluate_together(evaluators, lambda obs: noisy(obs, streams), streams)
    for i, e in enumerate(evaluators):
        alone_stream = generators([7 + i])
        (alone,) = evaluate_together([e], lambda obs, s=alone_stream: noisy(obs, s), alone_stream)
        assert together[i]["returns"] == alone["returns"] and together[i]["lengths"] == alone["lengths"]
        assert alone_stream[0].get_state().equal(streams[i].get_state())
        e.close()
    assert together[0]["lengths"] != together[1]["lengths"]
