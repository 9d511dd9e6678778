"""Several seeds as one batched model (``--vectorize-seeds``): the hooks that let an algorithm's own,
unchanged ``update`` run under ``torch.vmap`` over a leading seed dimension.

``SeedBatch`` (``offrl_zoo.train.seed_batch_model``) stacks the parameters of N independently
seeded copies of an algorithm and runs ``update`` once, vmapped over the stack. Three things in an
update cannot run inside vmap; each has one hook here, and each is an identity outside a seed batch:

- **random draws** (``randn_like``, ``rand``, ...): every seed draws from its own generator, which holds
  that seed's global RNG state, so seed i gets the very numbers a run of seed i alone draws;
- **optimiser steps** (``step_optimizer``): backward and ``optimizer.step`` on the stacked parameters
  happen outside the vmap level. The summed per-seed losses give each seed exactly its own gradient
  (seeds share no weights) and Adam is elementwise, so one stacked Adam is N independent ones;
- **in-place updates of whole modules** (Polyak averaging, freezing): applied to the stacked tensors.

Two modules run faster in a seed batch than their torch counterparts, with the same numbers: ``Linear``
(one ``baddbmm`` over the seeds) and ``Dropout`` (each seed's mask from its own stream; required).

The hooks leave the vmap level through a few private ``torch._C._functorch`` calls, all in this file.
PyTorch's public route to the same, an ``autograd.Function`` with a ``vmap`` staticmethod, measured ≈ 80
µs per call against ≈ 4 µs for these hooks (``benchmarks/speed/seed_hooks.py``). An update leaves the level
4 (BC) to 136 (DQL) times, so on the CPU that would cost 1–3 % per update. On CUDA the fast path captures
the seed-batch update (``offrl_zoo.graphs``), whose replays run no Python, so there either route would cost
capture time only; the CPU runs the update eagerly, and the hooks stay private for that 1–3 %.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import torch
import torch._C._functorch as functorch
from torch import nn
from torch.nn import functional as F

_streams: list[torch.Generator] | None = None  # the per-seed generators while a seed batch updates


@contextmanager
def seed_streams(generators: list[torch.Generator]) -> Iterator[None]:
    """Inside: random draws of the hooks below come from ``generators[i]`` for seed i."""
    global _streams
    previous, _streams = _streams, generators
    try:
        yield
    finally:
        _streams = previous


def _per_seed(draw) -> torch.Tensor:
    assert _streams is not None
    level = functorch.maybe_current_level()
    if level is None:
        return torch.stack([draw(g) for g in _streams])
    with outside_vmap(len(_streams)):  # vmap refuses random ops; these are per-seed draws of our own
        stacked = torch.stack([draw(g) for g in _streams])
    return functorch._add_batch_dim(stacked, 0, level)


def _draw(fn, *args, **kwargs) -> torch.Tensor:
    """``fn(*args, **kwargs)`` (a torch sampling function); in a seed batch, one draw per seed from its stream."""
    if _streams is None:
        return fn(*args, **kwargs)
    return _per_seed(lambda g: fn(*args, generator=g, **kwargs))


def randn_like(x: torch.Tensor) -> torch.Tensor:
    if _streams is None:  # keeps x's memory layout, as a lone run always did
        return torch.randn_like(x)
    return _draw(torch.randn, x.shape, dtype=x.dtype, device=x.device)


def randn(*shape: int, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return _draw(torch.randn, shape, device=device, dtype=dtype)


def rand(*shape: int, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return _draw(torch.rand, shape, device=device, dtype=dtype)


def randint(high: int, shape: Sequence[int], device: torch.device | str) -> torch.Tensor:
    return _draw(torch.randint, 0, high, tuple(shape), device=device)


def randperm(n: int, device: torch.device | str) -> torch.Tensor:
    return _draw(torch.randperm, n, device=device)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout``; under vectorised seeds, each seed's slice is dropped with that seed's own stream."""
    if _streams is None or not training or p == 0 or not functorch.is_batchedtensor(x):
        return F.dropout(x, p, training)
    return _per_seed_slices(x, lambda part, g: _with_stream(g, lambda: F.dropout(part, p, True)))


def multinomial(probs: torch.Tensor, num_samples: int) -> torch.Tensor:
    """``torch.multinomial``; under vectorised seeds, each seed draws from its own row weights and stream."""
    if _streams is None:
        return torch.multinomial(probs, num_samples)
    if not functorch.is_batchedtensor(probs):
        return _draw(torch.multinomial, probs, num_samples)
    return _per_seed_slices(probs, lambda part, g: torch.multinomial(part, num_samples, generator=g))


def _per_seed_slices(x: torch.Tensor, fn) -> torch.Tensor:
    """``fn(slice_i, generator_i)`` for each seed's slice of the seed-batched ``x``, restacked as batched."""
    assert _streams is not None
    level = functorch.maybe_get_level(x)
    base, bdim = _unwrap(x, level)
    base = base.movedim(bdim, 0)
    with outside_vmap(len(_streams)):  # vmap refuses random ops; these are per-seed draws of our own
        out = torch.stack([fn(base[i], g) for i, g in enumerate(_streams)])
    return functorch._add_batch_dim(out, 0, level)


def _with_stream(generator: torch.Generator, fn):
    """``fn()`` drawing from ``generator`` through the device's default generator (for kernels that take none)."""
    device = generator.device
    default = (
        torch.default_generator
        if device.type == "cpu"
        else torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    )
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        # A state copy cannot be captured; the default generator takes the seed's state object itself (registered
        # with the graph), so each replay draws from, and advances, the seed's stream.
        own = default.graphsafe_get_state()
        default.graphsafe_set_state(generator)
        try:
            return fn()
        finally:
            default.graphsafe_set_state(own)
    saved = default.get_state()
    default.set_state(generator.get_state())
    try:
        return fn()
    finally:
        generator.set_state(default.get_state())
        default.set_state(saved)


class Dropout(nn.Dropout):
    """``nn.Dropout`` that also works under vectorised seeds (same arguments, no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class Linear(nn.Linear):
    """``nn.Linear`` (same arguments, parameters and initialisation) whose seed-batched forward is one
    ``baddbmm`` (``linear``). An ``nn.Linear`` gives the same numbers in a seed batch, by vmap's slower rule."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def input_grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∇ₓ fn(x), fn(x)) for a scalar ``fn``, with no gradient to anything else (``torch.func`` under vmap,
    where ``requires_grad_`` is refused; the same numbers)."""
    if functorch.is_batchedtensor(x) or torch.compiler.is_compiling():  # Dynamo cannot trace requires_grad_
        return torch.func.grad_and_value(fn)(x)
    probe = x.detach().requires_grad_(True)
    value = fn(probe)
    (g,) = torch.autograd.grad(value, probe)
    return g, value


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear`` with a seed-batched weight as one ``baddbmm`` on the stacked tensors; vmap's own rule
    for linear with batched weights is ≈ 1.6× slower on the CPU. Other cases go to ``F.linear``."""
    if torch.compiler.is_compiling():  # a compiled update is never seed-batched; Dynamo skips the checks below
        return F.linear(x, weight, bias)
    level = functorch.maybe_get_level(weight) if functorch.is_batchedtensor(weight) else None
    if level is None or not functorch.is_batchedtensor(x) or functorch.maybe_get_level(x) != level:
        return F.linear(x, weight, bias)
    w, w_dim = _unwrap(weight, level)
    xs, x_dim = _unwrap(x, level)
    w, xs = w.movedim(w_dim, 0), xs.movedim(x_dim, 0)
    n, lead = w.shape[0], xs.shape[1:-1]
    flat = xs.reshape(n, -1, xs.shape[-1])
    if bias is None:
        out = torch.bmm(flat, w.transpose(1, 2))
    else:
        b, b_dim = _unwrap(bias, level)
        out = torch.baddbmm(b.movedim(b_dim, 0).unsqueeze(1), flat, w.transpose(1, 2))
    return functorch._add_batch_dim(out.reshape(n, *lead, out.shape[-1]), 0, level)


def elementwise(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` for an elementwise ``fn``, applied to the stacked tensor behind a seed-batched ``x``, so that
    custom autograd functions and in-place kernels run as they do for one seed."""
    level = functorch.maybe_get_level(x)
    base, dim = _unwrap(x, level)
    with outside_vmap(base.shape[dim]):  # autograd.Functions refuse to run under a functorch transform
        out = fn(base)
    return functorch._add_batch_dim(out, dim, level)


def _unwrap(t: torch.Tensor, level: int) -> tuple[torch.Tensor, int]:
    """The tensor behind ``t``, vmapped at ``level``, and the dimension it is batched along there."""
    base, bdim = functorch._unwrap_batched(t, level)
    assert bdim is not None, "expected a tensor batched at this vmap level (every seed-batched tensor is)"
    return base, bdim


def is_seed_batched(t: torch.Tensor) -> bool:
    return functorch.is_batchedtensor(t)


def unbatched(t: torch.Tensor) -> torch.Tensor:
    """The stacked tensor (seed dim first) behind a vmapped view; ``t`` itself outside a seed batch."""
    while functorch.is_batchedtensor(t):
        t, _ = functorch._unwrap_batched(t, functorch.maybe_get_level(t))
    return t


def set_requires_grad(params: list[torch.Tensor], flag: bool) -> None:
    """``requires_grad_`` on (stacked) parameters; functorch refuses it inside vmap, so it is done outside."""
    level = functorch.maybe_current_level()
    with outside_vmap(len(_streams)) if level is not None and _streams is not None else nullcontext():
        for p in params:
            p.requires_grad_(flag)


@contextmanager
def outside_vmap(n: int) -> Iterator[None]:
    """Leave the current vmap level (of batch size ``n``) for the body, and re-enter it after."""
    top = functorch.peek_interpreter_stack()
    if top is None or top.key() != functorch.TransformType.Vmap:
        raise RuntimeError(
            "vectorised seeds: random draws, optimiser steps, Mish, dropout and `frozen` cannot run "
            "inside another functorch transform (torch.func.grad, jvp, ...) within the seed batch"
        )
    functorch._vmap_decrement_nesting()
    try:
        yield
    finally:
        functorch._vmap_increment_nesting(n, "error")


def batched_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None = None
) -> torch.Tensor | None:
    """``step_optimizer`` for a seed-batched ``loss``: backward of the per-seed sum and one step of the
    stacked optimiser, outside vmap. Clipping uses each seed's own global norm, as a lone run does."""
    level = functorch.maybe_get_level(loss)
    base, dim = _unwrap(loss, level)
    stacked = base.movedim(dim, 0)
    n = stacked.shape[0]
    norm = None
    with outside_vmap(n):
        optimizer.zero_grad(set_to_none=True)
        stacked.sum().backward()
        if max_grad_norm is not None and max_grad_norm > 0:
            norm = _clip_per_seed(optimizer, max_grad_norm)
        optimizer.step()
    return None if norm is None else functorch._add_batch_dim(norm, 0, level)


def _clip_per_seed(optimizer: torch.optim.Optimizer, max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` applied to each seed's slice of the stacked gradients; returns (N,) norms."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    n = grads[0].shape[0]
    norms = torch.stack([g.reshape(n, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.reshape(n, *([1] * (g.ndim - 1))))
    return norms
