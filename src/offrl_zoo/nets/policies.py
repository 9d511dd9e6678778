"""Policies shared by the baselines and later the one-step diffusion-distilled actors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from offrl_zoo.nets import seed_batch
from offrl_zoo.nets.mlp import init_weights_, mlp, orthogonal_init_


class DeterministicActor(nn.Module):
    """a = max_action · tanh(MLP(s)) (TD3+BC, BC)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], max_action: float, init: str = "torch"):
        super().__init__()
        self.net = init_weights_(mlp(obs_dim, hidden, action_dim, "relu"), init)
        self.max_action = max_action

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.max_action * torch.tanh(self.net(obs))


class GaussianPolicy(nn.Module):
    """N(tanh(MLP(s)), diag(exp(log_std))²) with a state-independent log-std (IQL's original policy).

    Only the mean is squashed, so the log-probability needs no tanh Jacobian.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int],
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        dropout: float = 0.0,
        init: str = "orthogonal",
    ) -> None:
        super().__init__()
        self.net = init_weights_(mlp(obs_dim, hidden, action_dim, "relu", dropout=dropout), init)
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def mean_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tanh(self.net(obs))
        std = self.log_std.clamp(self.log_std_min, self.log_std_max).exp()
        return mean, std.expand_as(mean)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean_std(obs)
        z = (action - mean) / std
        return (-0.5 * z.pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def forward(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        mean, std = self.mean_std(obs)
        return mean if deterministic else mean + std * seed_batch.randn_like(mean)


class TanhGaussianPolicy(nn.Module):
    """DTQL's one-step policy: a = clip(a_max·tanh(μ + σξ), ±a_max) with state-dependent μ, log σ.

    Trunk: ReLU MLP → 2A outputs split into μ and log σ (clamped to [log_std_min, log_std_max]);
    orthogonal init with gain 1 and zero biases on every Linear (the official ``weight_init``; ``init``
    picks another scheme, e.g. ``torch`` for the SAC behaviour policies).
    ``log_prob`` is the official "likelihood" of a dataset action: the pre-tanh Gaussian density at
    atanh(a / (a_max + 1e−3)), with no tanh Jacobian (docs/reference.md §2.2).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int],
        max_action: float,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        init: str = "orthogonal_gain1",
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * action_dim, "relu")
        if init == "orthogonal_gain1":
            orthogonal_init_(self.net, gain=1.0)
        else:
            init_weights_(self.net, init)
        self.max_action = max_action
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def mean_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = self.net(obs).chunk(2, dim=-1)
        return mu, log_std.clamp(self.log_std_min, self.log_std_max).exp()

    def forward(self, obs: torch.Tensor, deterministic: bool = False, repeats: int = 1) -> torch.Tensor:
        """Reparameterised sample (or a_max·tanh(μ) when ``deterministic``); with ``repeats``, that many samples
        per observation in ``repeat_interleave`` order, from one pass of the network per observation (the same
        draws as sampling at ``obs.repeat_interleave(repeats, 0)``)."""
        mu, std = self.mean_std(obs)
        if repeats > 1:
            mu, std = mu.repeat_interleave(repeats, dim=0), std.repeat_interleave(repeats, dim=0)
        z = mu if deterministic else mu + std * seed_batch.randn_like(mu)
        return (self.max_action * torch.tanh(z)).clamp(-self.max_action, self.max_action)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mu, std = self.mean_std(obs)
        z = (torch.atanh(action / (self.max_action + 1e-3)) - mu) / std
        return (-0.5 * z.pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample_with_log_prob(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised a = a_max·tanh(μ + σξ) and its exact log-density, tanh Jacobian included (SAC).

        log(1 − tanh²z) is computed as 2·(log 2 − z − softplus(−2z)), which stays finite for large |z|.
        """
        mu, std = self.mean_std(obs)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + std * noise
        gauss = -0.5 * noise.pow(2) - std.log() - 0.5 * math.log(2 * math.pi)
        jacobian = 2.0 * (math.log(2.0) - z - F.softplus(-2.0 * z)) + math.log(self.max_action)
        return self.max_action * torch.tanh(z), (gauss - jacobian).sum(-1)
