"""Optimisers: how they are built (graph-safe on the fast path), how one optimiser step is taken, and the
training state (weights + optimisers + schedulers) of a module that owns them.

Two ways to take a step, one maths (Adam/AdamW):
- eager (the reference): ``zero_grad`` → ``backward`` → [clip] → ``optimizer.step()``;
- graph-safe (the fast path): ``torch.autograd.grad`` of the loss for the optimiser's own parameters →
  [clip] → Adam/AdamW written in tensor ops (``_adam_group``) on the optimiser's own state tensors, with the
  learning rate held as a tensor. Nothing in it calls into Python-side optimiser machinery that Dynamo
  refuses to trace, so a whole update (forward, backward, every optimiser step, target updates) compiles as
  one graph (``torch.compile(fullgraph=True)``) and can be captured as one CUDA graph. The optimiser object still
  holds the state, so checkpoints, schedulers and ``state_dict`` are those of eager training.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from offrl_zoo.errors import CheckpointError
from offrl_zoo.nets import seed_batch

# Set on optimisers built graph-safe (``make_optimizer(..., graph_safe=True)``); ``step_optimizer`` steps them
# functionally. An attribute, not a registry: Dynamo guards on it as a constant of the traced optimiser.
GRAPH_SAFE_FLAG = "_offrl_zoo_graph_safe"


def make_optimizer(
    params: Any, graph_safe: bool, optimizer: type[torch.optim.Optimizer] = torch.optim.Adam, **kwargs: Any
) -> torch.optim.Optimizer:
    """``optimizer(params, **kwargs)`` (Adam or AdamW). ``graph_safe``: its learning rate becomes a tensor on the
    parameters' device and its state is created now, so that ``step_optimizer`` can step it inside a compiled
    or captured region (module docstring)."""
    params = list(params)
    if not graph_safe:
        return optimizer(params, **kwargs)
    if not issubclass(optimizer, torch.optim.Adam) or kwargs.get("amsgrad") or kwargs.get("maximize"):
        raise ValueError(
            f"fast=true steps optimisers graph-safe, which offrl-zoo implements for Adam and AdamW (without amsgrad "
            f"or maximize); got {optimizer.__name__} {kwargs}. Use one of those, or fast=false"
        )
    device = params[0].device if params else torch.device("cpu")
    opt = optimizer(params, capturable=device.type != "cpu", **kwargs)
    # Its step never goes through Optimizer.step: this keeps LR schedulers from warning that it was not called.
    opt._opt_called = True  # type: ignore[attr-defined]
    setattr(opt, GRAPH_SAFE_FLAG, True)
    place_graph_safe_state(opt)
    return opt


def place_graph_safe_state(opt: torch.optim.Optimizer) -> None:
    """Learning rates as tensors on the parameters' device (set after construction, whose checks of the value
    would read a device tensor back), and Adam's per-parameter state as ``Adam.step`` creates it on first use
    (zero moments, step 0), created up front so that a compiled step finds it; ``step`` lives on the
    parameter's device off the CPU (capturable). Called again after loading a checkpoint."""
    for group in opt.param_groups:
        device = group["params"][0].device if group["params"] else torch.device("cpu")
        group["lr"] = torch.as_tensor(group["lr"], dtype=torch.float32).to(device)
        for p in group["params"]:
            state = opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            elif p.device.type != "cpu" and state["step"].device != p.device:  # a checkpoint loaded onto the CPU
                state["step"] = state["step"].to(p.device)


def is_graph_safe(opt: torch.optim.Optimizer) -> bool:
    return getattr(opt, GRAPH_SAFE_FLAG, False)


def step_optimizer(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None = None
) -> torch.Tensor | None:
    """One optimiser step on ``loss``: gradients of the optimiser's parameters → [clip their global L2 norm to
    ``max_grad_norm``] → Adam. Eager optimisers take it as zero_grad → backward → step; graph-safe ones
    functionally (module docstring). Returns the norm before clipping when clipping (no host sync), else None.
    """
    if seed_batch.is_seed_batched(loss):  # several seeds as one model (--vectorize-seeds)
        return seed_batch.batched_step(optimizer, loss, max_grad_norm)
    if is_graph_safe(optimizer):
        return _graph_safe_step(optimizer, loss, max_grad_norm)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = None
    if max_grad_norm is not None and max_grad_norm > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return norm


def _graph_safe_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None
) -> torch.Tensor | None:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # Only these parameters' gradients are built: a network the loss passes through but this optimiser does
    # not train gets none, as `frozen` gives in eager steps. An unused parameter is skipped, as Adam skips it.
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    norm = None
    if max_grad_norm is not None and max_grad_norm > 0:  # clip_grad_norm_'s maths, on the gradient list
        norm = torch.nn.utils.get_total_norm([g for g in grads if g is not None])
        coef = (max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
        grads = tuple(None if g is None else g * coef for g in grads)
    position = 0
    with torch.no_grad():
        for group in optimizer.param_groups:
            own = grads[position : position + len(group["params"])]
            position += len(group["params"])
            used = [(p, g) for p, g in zip(group["params"], own, strict=True) if g is not None]
            if used:
                _adam_group([p for p, _ in used], [g for _, g in used], optimizer, group)
    return norm


def _adam_group(
    params: list[torch.Tensor], grads: list[torch.Tensor], optimizer: torch.optim.Optimizer, group: dict[str, Any]
) -> None:
    """One Adam/AdamW step of one parameter group in tensor ops only (no host read: graph-safe), the maths of
    ``torch.optim.Adam``/``AdamW``: per-parameter steps, moments and updates as torch keeps them, so
    checkpoints and eager resumes are interchangeable. It differs from torch's own tensor-only ("capturable")
    form in two places, both for the speed of a compiled CPU step and both float32 rounding only:
    - the bias corrections ``1 − βᵗ`` are computed once per group, for all its parameters' steps stacked, in
      float64 as ``1 − exp(t·log β)``, as eager Adam computes them in Python floats. Torch's form computes
      ``β ** step`` per parameter in float32, and inductor inlines that scalar ``pow`` into the parameter's
      elementwise loop, i.e. two scalar ``pow`` per 16 elements; an ``exp`` read by several kernels is
      computed once instead (inductor's rule for heavy ops on the CPU);
    - the update is eager Adam's ``p += (−lr/(1−β₁ᵗ))·m/(√v·(1−β₂ᵗ)^−½ + ε)``: one division per element
      where torch's form takes three.
    Measured against torch's form on every algorithm's training step (hopper shapes, one thread, Intel
    Xeon): 1.005–1.08× faster, DTQL 1.06× (benchmarks/speed/README.md, "Host-side costs").
    """
    states = [optimizer.state[p] for p in params]
    steps = [s["step"] for s in states]
    exp_avgs = [s["exp_avg"] for s in states]
    exp_avg_sqs = [s["exp_avg_sq"] for s in states]
    beta1, beta2 = group["betas"]
    lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
    torch._foreach_add_(steps, 1)
    if weight_decay != 0:
        if group.get("decoupled_weight_decay", False):  # AdamW
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        else:
            grads = list(torch._foreach_add(grads, params, alpha=weight_decay))
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    step = torch.stack(steps).double()
    correction1 = 1 - torch.exp(step * math.log(beta1))
    correction2 = 1 - torch.exp(step * math.log(beta2))
    step_size = (-lr.double() / correction1).float().unbind()  # lr: a tensor on graph-safe optimisers
    inv_correction2_sqrt = correction2.rsqrt().float().unbind()
    update = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_mul_(update, inv_correction2_sqrt)
    torch._foreach_add_(update, eps)
    update = torch._foreach_div(exp_avgs, update)
    torch._foreach_mul_(update, step_size)
    torch._foreach_add_(params, update)


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
        self.load_optimizer_states(
            {k: state["optimizers"][k] for k in self.optimizers}, {k: state["schedulers"][k] for k in self.schedulers}
        )

    def load_optimizer_states(self, optimizers: dict[str, Any], schedulers: dict[str, Any]) -> None:
        """Load the states of the named optimisers and schedulers (all of them or some); a graph-safe optimiser
        gets its learning rates back as device tensors, which loading had made plain values again."""
        for key, value in optimizers.items():
            opt = self.optimizers[key]
            opt.load_state_dict(value)
            if is_graph_safe(opt):
                place_graph_safe_state(opt)
        for key, value in schedulers.items():
            self.schedulers[key].load_state_dict(value)
