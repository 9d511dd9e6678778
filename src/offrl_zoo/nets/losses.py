"""Loss helpers shared by several algorithms."""

from __future__ import annotations

import torch


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean |τ − 1(diff < 0)| · diff² (IQL's value loss; diff = Q − V)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def not_done(batch) -> torch.Tensor:
    """1 − terminated as float (B,): timeouts never stop bootstrapping."""
    return 1.0 - batch["next", "terminated"].reshape(-1).float()
