"""DQL specifics pinned to docs/reference.md §4: the normalised Q loss (quirk #12), the max-Q backup, the
EMA actor's late start (quirk #15), the once-per-50-epochs lr schedule (quirk #13); and it learns."""

from __future__ import annotations

import json
import math

import pytest
import torch
from offrl_zoo.algorithms.dql import DQL
from offrl_zoo.algorithms.dql.dql import backup_value, normalised_q_loss
from test_it_learns import TASK, random_policy_score

from offrl_zoo.testing import make, random_batch, tiny_spec
from offrl_zoo.train import RunRequest, train

TINY = {"hidden": 16, "critic_hidden": 16}


def test_q_loss_is_one_head_over_the_other_heads_mean_abs():
    q = torch.tensor([[1.0, 2.0, 3.0], [-2.0, 4.0, -6.0]], requires_grad=True)
    loss = normalised_q_loss(q, torch.tensor([0, 1]))  # −mean(Q1) / mean|Q2| = −2 / 4
    assert loss.item() == pytest.approx(-0.5)
    (grad,) = torch.autograd.grad(loss, q)  # the denominator is a constant: only Q1 gets gradient
    torch.testing.assert_close(grad, torch.tensor([[-1 / 12] * 3, [0.0] * 3]))
    assert normalised_q_loss(q, torch.tensor([1, 0])).item() == pytest.approx((4 / 3) / 2)


def test_max_q_backup_takes_max_per_head_then_min():
    # two states × three next actions, grouped per state as repeat_interleave lays them out
    target_q = torch.tensor([[1.0, 5.0, 2.0, 0.0, 0.0, 9.0], [4.0, 3.0, 6.0, 8.0, 7.0, 1.0]])
    torch.testing.assert_close(backup_value(target_q, 3), torch.tensor([5.0, 8.0]))  # min-then-max: [3, 1]
    torch.testing.assert_close(backup_value(target_q, 1), target_q.min(0).values)


def test_ema_actor_keeps_its_initial_weights_until_ema_start():
    algo = make(DQL, ema_start=5, steps=20, **TINY)
    pre, main = algo.stages()
    assert (pre.name, pre.steps, main.name, main.steps) == ("pre_ema", 5, "train", 15)
    init = [p.clone() for p in algo.actor_ema.parameters()]
    for step in range(5):
        pre.update(random_batch(tiny_spec(), seed=step), step)
    assert all(torch.equal(a, b) for a, b in zip(init, algo.actor_ema.parameters(), strict=True))
    main.update(random_batch(tiny_spec(), seed=5), 0)  # global step 5: first EMA update, β = 0.995
    for old, ema, actor in zip(init, algo.actor_ema.parameters(), algo.actor.parameters(), strict=True):
        torch.testing.assert_close(ema, 0.995 * old + 0.005 * actor)
    after = [p.clone() for p in algo.actor_ema.parameters()]
    main.update(random_batch(tiny_spec(), seed=6), 1)  # global step 6: not a multiple of 5
    assert all(torch.equal(a, b) for a, b in zip(after, algo.actor_ema.parameters(), strict=True))


def test_official_lr_schedule_steps_once_per_50_epochs_with_t_max_in_epochs():
    algo = make(DQL, **TINY)  # 2 M steps → T_max = 2000 "epochs"
    batch = random_batch(tiny_spec())
    pre_ema, train = (algo.compiled_update(stage) for stage in algo.stages())  # each update, then its schedulers
    pre_ema(batch, 998)  # global step 998
    train(batch, 49_998 - 1000)  # global step 49 998
    assert algo.optimizers["actor"].param_groups[0]["lr"] == pytest.approx(3e-4)
    train(batch, 49_999 - 1000)  # the end of the first 50-epoch train() call
    for opt in algo.optimizers.values():
        assert opt.param_groups[0]["lr"] == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi / 2000)))
    cosine = make(DQL, lr_schedule="cosine", steps=10, **TINY)
    cosine.compiled_update(cosine.stages()[0])(batch, 0)
    assert cosine.optimizers["critic"].param_groups[0]["lr"] == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi / 10)))


# Small nets; 200 steps before the EMA starts and 200 with it; lr 3e-3 for both networks (the toy rate).
SMALL_DQL = ["hidden=64", "critic_hidden=64", "steps=400", "ema_start=200", "lr=3e-3", "critic_lr=3e-3"]


@pytest.mark.slow
def test_dql_beats_random_policy(tmp_path):
    req = RunRequest("dql", task=TASK, seed=0, eval_every=10**9, eval_episodes=100, overrides=SMALL_DQL)
    run_dir = train(req, run_dir=tmp_path / "dql", progress=False)
    final = json.loads((run_dir / "done").read_text())["final_eval"]
    random_score = random_policy_score()
    assert final["score_mean"] > random_score + 30, (final["score_mean"], random_score)
