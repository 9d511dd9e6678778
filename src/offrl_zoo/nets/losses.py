"""Loss helpers shared by several algorithms."""

from __future__ import annotations

import torch

from offrl_zoo.nets import seed_batch


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean |τ − 1(diff < 0)| · diff² (IQL's value loss; diff = Q − V)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def not_done(batch) -> torch.Tensor:
    """1 − terminated as float (B,): timeouts never stop bootstrapping."""
    return 1.0 - batch["next", "terminated"].reshape(-1).float()


def adam(params, fused: bool, optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
         **kwargs) -> torch.optim.Optimizer:
    """``optimizer(params, **kwargs)`` (Adam or AdamW); with ``fused``, its fused kernel where the parameters'
    device has one (CPU, CUDA). Same maths as the default per-tensor loop, to float rounding."""
    params = list(params)
    fused = fused and bool(params) and params[0].device.type in ("cpu", "cuda")
    return optimizer(params, fused=True if fused else None, **kwargs)


def step_optimizer(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, scheduler=None, max_grad_norm: float | None = None
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
