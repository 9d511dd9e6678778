"""Optimisers: how they are built (fused kernels on the fast path), how one optimiser step is taken, and the
training state (weights + optimisers + schedulers) of a module that owns them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from offrl_zoo.errors import CheckpointError
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


class TrainableModule(nn.Module):
    """An ``nn.Module`` that owns the optimisers (and schedulers) training it.

    ``state_dict``/``load_state_dict`` stay ``nn.Module``'s: the weights alone. ``training_state()`` is what
    exact resume needs: ``{"modules": weights, "optimizers": {...}, "schedulers": {...}}``.
    """

    optimizers: dict[str, torch.optim.Optimizer]  # set by the subclass's __init__
    schedulers: dict[str, Any]

    def training_state(self) -> dict[str, Any]:
        return {
            "modules": self.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Load what ``training_state()`` returned; bare weights (``state_dict()``) are refused, since
        resuming without the optimiser states would silently change the run."""
        if "modules" not in state:
            raise CheckpointError(
                "holds weights only (nn.Module.state_dict()); a resumable checkpoint needs training_state(): "
                "{'modules', 'optimizers', 'schedulers'}. To start from these weights, load_state_dict() them "
                "into a freshly built model and save its training_state()"
            )
        self.load_state_dict(state["modules"])
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        for key, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][key])
