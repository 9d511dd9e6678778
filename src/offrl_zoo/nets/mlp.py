"""Plain MLPs and initialisers shared by every algorithm."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import nn

from offrl_zoo.nets import seed_batch
from offrl_zoo.nets.activations import Mish

ModuleT = TypeVar("ModuleT", bound=nn.Module)

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "mish": Mish, "silu": nn.SiLU, "tanh": nn.Tanh}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r}: expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    act: str = "relu",
    layer_norm: bool = False,
    dropout: float = 0.0,
) -> nn.Sequential:
    """Linear → [LayerNorm] → act → [Dropout] per hidden layer, then a Linear output layer."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(seed_batch.Linear(in_dim, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(seed_batch.Dropout(dropout))
        in_dim = width
    layers.append(seed_batch.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def orthogonal_init_(module: nn.Module, gain: float = math.sqrt(2)) -> nn.Module:
    """jaxrl's ``default_init``: orthogonal kernels (gain √2 by default), zero biases, every Linear."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain=gain)
            nn.init.zeros_(layer.bias)
    return module


def init_weights_(module: nn.Module, scheme: str) -> nn.Module:
    """``torch`` keeps PyTorch's default Linear init; ``orthogonal`` applies jaxrl's."""
    if scheme == "orthogonal":
        return orthogonal_init_(module)
    if scheme != "torch":
        raise ValueError(f"init={scheme!r}: expected 'torch' or 'orthogonal'")
    return module


@torch.no_grad()
def polyak_update_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ̄ ← τ·θ + (1 − τ)·θ̄ for every parameter, as one fused foreach kernel."""
    # Elementwise, so under vectorised seeds it runs on the stacked tensors behind the vmapped views.
    targets = [seed_batch.unbatched(p) for p in target.parameters()]
    torch._foreach_lerp_(targets, [seed_batch.unbatched(p) for p in source.parameters()], tau)


def frozen_copy(module: ModuleT) -> ModuleT:
    """A deep copy with gradients off, for target networks."""
    import copy

    clone = copy.deepcopy(module)
    clone.requires_grad_(False)
    return clone


class frozen:
    """Context manager: parameters of ``modules`` get no gradients inside (inputs still do).

    Used when a loss differentiates through a network it must not train (e.g. the actor loss through
    the critic), so that no weight gradients are built for it. It saves work and changes no number (every
    optimiser step starts from fresh gradients). While an update is being compiled it does nothing: Dynamo
    cannot trace ``requires_grad_``, and the graph-safe step it compiles with (``offrl_zoo.optim``) builds
    gradients for the stepped optimiser's parameters only.
    """

    def __init__(self, *modules: nn.Module) -> None:
        params = (seed_batch.unbatched(p) for m in modules for p in m.parameters())
        self.params = [p for p in params if p.requires_grad]

    def __enter__(self) -> None:
        if not torch.compiler.is_compiling():
            seed_batch.set_requires_grad(self.params, False)

    def __exit__(self, *exc: object) -> None:
        if not torch.compiler.is_compiling():
            seed_batch.set_requires_grad(self.params, True)
