"""Noise-level / time embeddings (docs/reference.md §1.4): each maps a (B,) input to (B, out_dim)."""

from __future__ import annotations

import math

import torch
from torch import nn

from offrl_zoo.nets import seed_batch
from offrl_zoo.nets.activations import Mish


class SinusoidalEmbedding(nn.Module):
    """[sin(u·ω), cos(u·ω)] with ω_k = 10000^(−k/(dim/2 − 1)), then Linear(dim→2dim)–Mish–Linear(2dim→dim).

    DTQL feeds u = ln(σ)/4, DQL the integer step index; the first half of the features are sines.
    """

    freqs: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"sinusoidal embedding width {dim}: expected an even number ≥ 4")
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) / (half - 1) * torch.arange(half)))
        self.mlp = nn.Sequential(seed_batch.Linear(dim, 2 * dim), Mish(), seed_batch.Linear(2 * dim, dim))
        self.out_dim = dim

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        angles = u.reshape(-1, 1) * self.freqs
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))


class LearnableFourierEmbedding(nn.Module):
    """IDQL: f = 2π·t·Wᵀ, trainable W ~ N(0, 0.2²) of shape (64, 1); [cos f, sin f] → Dense(256)–swish–Dense(256)."""

    def __init__(self, features: int = 128, out_dim: int = 256) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(features // 2, 1) * 0.2)
        self.mlp = nn.Sequential(seed_batch.Linear(features, out_dim), nn.SiLU(), seed_batch.Linear(out_dim, out_dim))
        self.out_dim = out_dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t.reshape(-1, 1).float() @ self.weight.T
        return self.mlp(torch.cat([f.cos(), f.sin()], dim=-1))


class GaussianFourierEmbedding(nn.Module):
    """SRPO: fixed W ~ N(0, 30²) of size 32; [sin 2πtW, cos 2πtW] → Linear(64→128)–Mish–Linear(128→128)."""

    weight: torch.Tensor

    def __init__(self, features: int = 64, out_dim: int = 128, scale: float = 30.0) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(features // 2) * scale)
        self.mlp = nn.Sequential(seed_batch.Linear(features, out_dim), Mish(), seed_batch.Linear(out_dim, out_dim))
        self.out_dim = out_dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t.reshape(-1, 1) * self.weight
        return self.mlp(torch.cat([f.sin(), f.cos()], dim=-1))
