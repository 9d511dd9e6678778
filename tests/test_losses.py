"""The loss helpers shared by the algorithms."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from offrl_zoo.nets.losses import td_target


def test_td_target_bootstraps_through_timeouts_only_and_is_a_constant():
    batch = TensorDict(
        {
            "next": {
                "reward": torch.tensor([[1.0], [2.0], [3.0]]),
                "terminated": torch.tensor([[False], [True], [False]]),
                "truncated": torch.tensor([[False], [False], [True]]),
            }
        },
        batch_size=[3],
    )
    next_value = torch.tensor([10.0, 10.0, 10.0], requires_grad=True)
    y = td_target(batch, next_value, 0.5)
    assert torch.equal(y, torch.tensor([6.0, 2.0, 8.0]))
    assert not y.requires_grad
