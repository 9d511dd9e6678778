"""Vectorised ensembles: E independent MLP heads evaluated as one batched matmul per layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from offrl_zoo.nets.mlp import activation


class EnsembleLinear(nn.Module):
    """E independent affine maps; input (B, in) is shared by all members, (E, B, in) is per member."""

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The distribution of nn.Linear's default init, per member: U(±1/sqrt(fan_in)) for both.
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    @torch.no_grad()
    def orthogonal_(self, gain: float) -> None:
        n, in_dim, out_dim = self.weight.shape
        for i in range(n):  # each member drawn in nn.Linear's (out, in) layout, stored transposed
            self.weight[i].copy_(nn.init.orthogonal_(torch.empty(out_dim, in_dim), gain=gain).T)
        self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.expand(self.weight.shape[0], *x.shape)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with separate affine parameters per member."""

    def __init__(self, n: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps), self.weight)


class EnsembleMLP(nn.Module):
    """E MLPs of the same shape; forward maps (B, in) or (E, B, in) to (E, B, out)."""

    def __init__(
        self, n: int, in_dim: int, hidden: Sequence[int], out_dim: int, act: str = "relu", layer_norm: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers.append(EnsembleLinear(n, in_dim, width))
            if layer_norm:
                layers.append(EnsembleLayerNorm(n, width))
            layers.append(activation(act))
            in_dim = width
        layers.append(EnsembleLinear(n, in_dim, out_dim))
        self.net = nn.Sequential(*layers)
        self.n = n

    def orthogonal_(self, gain: float = math.sqrt(2)) -> EnsembleMLP:
        for layer in self.net:
            if isinstance(layer, EnsembleLinear):
                layer.orthogonal_(gain)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class QEnsemble(nn.Module):
    """E Q-heads Q_e(s, a) on concat(s, a); returns (E, B)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int],
        n: int = 2,
        act: str = "relu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.body = EnsembleMLP(n, obs_dim + action_dim, hidden, 1, act, layer_norm)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([obs, action], dim=-1)).squeeze(-1)
