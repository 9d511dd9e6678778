"""Discrete VP-DDPM with T steps (docs/reference.md §1.6): the schedule, the ε-prediction loss, and the
two samplers: DQL's posterior-mean sampler with x̂0 clipping (A) and IDQL's ε-form ancestral sampler (B).

Step indices are 0-based (t = 0..T−1) as in both codebases.
"""

from __future__ import annotations

import torch
from torch import nn

from offrl_zoo.nets import seed_batch


class VPSchedule(nn.Module):
    """β_i = 1 − exp(−b_min/T − ½(b_max − b_min)(2i − 1)/T²), i = 1..T; tables stored as buffers."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor
    alpha_bars_prev: torch.Tensor
    posterior_var: torch.Tensor
    posterior_log_var: torch.Tensor
    coef_x0: torch.Tensor
    coef_xt: torch.Tensor

    def __init__(self, steps: int = 5, b_min: float = 0.1, b_max: float = 10.0) -> None:
        super().__init__()
        i = torch.arange(1, steps + 1, dtype=torch.float64)
        betas = 1 - torch.exp(-b_min / steps - 0.5 * (b_max - b_min) * (2 * i - 1) / steps**2)
        alphas = 1 - betas
        alpha_bars = torch.cumprod(alphas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        posterior_var = betas * (1 - prev) / (1 - alpha_bars)
        tables = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bars": alpha_bars,
            "alpha_bars_prev": prev,
            "posterior_var": posterior_var,
            "posterior_log_var": posterior_var.clamp(min=1e-20).log(),
            "coef_x0": betas * prev.sqrt() / (1 - alpha_bars),
            "coef_xt": (1 - prev) * alphas.sqrt() / (1 - alpha_bars),
        }
        for key, value in tables.items():
            self.register_buffer(key, value.float(), persistent=False)
        self.steps = steps

    def eps_loss(self, net: nn.Module, x: torch.Tensor, obs: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
        """‖ε_φ(x_t, s, t) − ε‖² with t ~ U{0..T−1}; ``mean`` over (b, j) (DQL) or ``sum_mean``: Σ_j, mean_b (IDQL)."""
        t = seed_batch.randint(self.steps, (x.shape[0],), device=x.device)
        noise = seed_batch.randn_like(x)
        ab = self.alpha_bars[t].unsqueeze(-1)
        err = (net(ab.sqrt() * x + (1 - ab).sqrt() * noise, obs, t.float()) - noise).pow(2)
        return err.mean() if reduce == "mean" else err.sum(-1).mean()

    def sample_posterior_mean(self, net: nn.Module, obs: torch.Tensor, action_dim: int, clip: float) -> torch.Tensor:
        """Sampler A (DQL): x̂0 clipped to ±clip, posterior mean + √β̃_t·z (t > 0), final clip.

        Differentiable end to end: DQL's actor loss backpropagates through all T steps.
        """
        x = seed_batch.randn(obs.shape[0], action_dim, device=obs.device)
        for t in range(self.steps - 1, -1, -1):
            eps = net(x, obs, float(t))
            ab = self.alpha_bars[t]
            x0 = ((1 / ab).sqrt() * x - (1 / ab - 1).sqrt() * eps).clamp(-clip, clip)
            x = self.coef_x0[t] * x0 + self.coef_xt[t] * x
            if t > 0:
                x = x + (0.5 * self.posterior_log_var[t]).exp() * seed_batch.randn_like(x)
        return x.clamp(-clip, clip)

    def sample_ancestral(
        self,
        net: nn.Module,
        obs: torch.Tensor,
        action_dim: int,
        clip: bool = True,
        temperature: float = 1.0,
        repeat_last: int = 0,
        bound: float = 1.0,
    ) -> torch.Tensor:
        """Sampler B (IDQL): x ← (x − β_t/√(1 − ᾱ_t)·ε)/√α_t + √β_t·κ·z (t > 0), clipped to ±bound each step.

        The noise variance is β_t (not β̃_t) and x̂0 is not clipped, as in the official code (bound 1); the
        t = 0 step is repeated ``repeat_last`` extra times (M), then a final clip.
        """
        x = seed_batch.randn(obs.shape[0], action_dim, device=obs.device)
        for t in [*range(self.steps - 1, -1, -1), *([0] * repeat_last)]:
            eps = net(x, obs, float(t))
            x = (x - self.betas[t] / (1 - self.alpha_bars[t]).sqrt() * eps) / self.alphas[t].sqrt()
            if t > 0:
                x = x + self.betas[t].sqrt() * temperature * seed_batch.randn_like(x)
            if clip:
                x = x.clamp(-bound, bound)
        return x.clamp(-bound, bound)
