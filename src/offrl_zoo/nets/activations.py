"""Mish, x·tanh(softplus(x)), computed with one exp instead of PyTorch's tanh-based kernel.

tanh(softplus(x)) = n / (n + 2) with n = eˣ(eˣ + 2), so Mish needs a single vectorised exp. On the CPU
build used here ``aten::mish`` spends most of its time in a scalar tanh (≈ 3 ns per element, single
thread), which made Mish the largest single cost of a DTQL step. The formula agrees with ``F.mish`` to
≈ 2e-6 (float32 rounding) in value and gradient; benchmarks/speed/README.md has the measurements.

Each elementwise step is a separate pass over memory, so for tensors much larger than the CPU cache
(SRPO's 2 048 × 1 024 residual blocks with gradients, DTQL scoring 16 × 1 024 candidates) PyTorch's
one-pass kernel is faster and is used instead; under ``torch.compile`` the passes fuse into one loop.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from offrl_zoo.nets.seed_batch import elementwise, is_seed_batched

# Above these sizes aten::mish is faster (measured crossovers, one thread): with gradients the formula
# wins at 2 × 512 × 256 elements and loses at 2 × 1 024 × 256; without, it wins at 2 × 4 096 × 256
# (DTQL scoring 1 024 candidates for 8 states) and loses at 2 × 16 384 × 256.
_FORMULA_MAX_GRAD_NUMEL = 1 << 18
_FORMULA_MAX_NUMEL = 1 << 22
_EXP_CLAMP = 20.0  # beyond it tanh(softplus(x)) is 1 in float32; the clamp keeps e²ˣ finite


def _exp_terms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eˣ, tanh(softplus(x))) from one exp."""
    e = x.clamp(max=_EXP_CLAMP).exp_()
    n = e.add(2.0).mul_(e)
    return e, n.add(2.0).reciprocal_().mul_(n)


class _MishFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        e, t = _exp_terms(x)
        ctx.save_for_backward(x, e, t)
        return x * t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, e, t = ctx.saved_tensors
        xs = e.add(1.0).reciprocal_().mul_(e).mul_(x)  # x·σ(x)
        # d/dx x·tanh(softplus(x)) = t + x·σ(x)·(1 − t²)
        return grad * torch.addcmul(t + xs, xs, t * t, value=-1.0)


def mish(x: torch.Tensor) -> torch.Tensor:
    if is_seed_batched(x):  # vectorised seeds: the same kernels, on the stacked tensor
        return elementwise(mish, x)
    if torch.compiler.is_compiling():  # plain ops: inductor fuses them, and their gradient, into one loop
        e = x.clamp(max=_EXP_CLAMP).exp()
        n = e * (e + 2.0)
        return x * n / (n + 2.0)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x * _exp_terms(x)[1] if x.numel() <= _FORMULA_MAX_NUMEL else F.mish(x)
    if x.numel() > _FORMULA_MAX_GRAD_NUMEL:
        return F.mish(x)
    return _MishFunction.apply(x)


class Mish(nn.Module):
    """Drop-in for ``nn.Mish`` (same function, same parameters: none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x)
