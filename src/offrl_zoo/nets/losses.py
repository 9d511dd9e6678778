"""Loss helpers shared by several algorithms."""

from __future__ import annotations

import torch
from tensordict import TensorDict


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean |τ − 1(diff < 0)| · diff² (IQL's value loss; diff = Q − V)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def not_done(batch: TensorDict) -> torch.Tensor:
    """1 − terminated as float (B,): timeouts never stop bootstrapping."""
    return 1.0 - batch["next", "terminated"].reshape(-1).float()


@torch.no_grad()
def td_target(batch: TensorDict, next_value: torch.Tensor, discount: float) -> torch.Tensor:
    """r + (1 − terminated)·γ·V(s') as a constant (B,): every critic's one-step TD target.

    Computed as r + (not_done·γ)·next_value, the order each algorithm used before sharing it; another
    order rounds differently, so results would no longer be bit-identical.
    """
    return batch["next", "reward"].reshape(-1) + not_done(batch) * discount * next_value
