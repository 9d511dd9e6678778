"""Optimisers: how they are built (fused kernels on the fast path) and how one optimiser step is taken."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from offrl_zoo.nets import seed_batch


def make_optimizer(
    params: Any, fused: bool, optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam, **kwargs: Any
) -> torch.optim.Optimizer:
    """``optimizer(params, **kwargs)`` (Adam or AdamW); with ``fused``, its fused kernel where the parameters'
    device has one (CPU, CUDA). Same maths as the default per-tensor loop, to float rounding."""
    params = list(params)
    fused = fused and bool(params) and params[0].device.type in ("cpu", "cuda")
    return optimizer(params, fused=True if fused else None, **kwargs)


def step_optimizer(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    scheduler: Any = None,
    max_grad_norm: float | None = None,
) -> torch.Tensor | None:
    """zero_grad → backward → [clip the global L2 norm of the optimiser's gradients] → step → [scheduler].

    With ``max_grad_norm`` > 0 the gradients are clipped first (``clip_grad_norm_``, no host sync) and
    the norm before clipping is returned; otherwise nothing is returned.
    """
    if seed_batch.is_seed_batched(loss):  # several seeds as one model (--vectorize-seeds)
        return seed_batch.batched_step(optimizer, loss, scheduler, max_grad_norm)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = None
    if max_grad_norm is not None and max_grad_norm > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return norm
