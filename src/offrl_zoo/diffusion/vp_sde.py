"""Continuous VP-SDE with linear β(t) = β_0 + t(β_1 − β_0) on t ∈ [0, 1] (SRPO; docs/reference.md §1.7)."""

from __future__ import annotations

import torch

from offrl_zoo.nets import seed_batch


def vp_sde_alpha_sigma(t: torch.Tensor, beta_0: float = 0.1, beta_1: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(α_t, σ_t) with log α_t = −¼t²(β_1 − β_0) − ½tβ_0 and σ_t = √(1 − α_t²)."""
    log_alpha = -0.25 * t.pow(2) * (beta_1 - beta_0) - 0.5 * t * beta_0
    alpha = log_alpha.exp()
    return alpha, (1 - alpha.pow(2)).sqrt()


def vp_sde_eps_loss(net, x: torch.Tensor, obs: torch.Tensor, t_min: float = 1e-3) -> torch.Tensor:
    """SRPO's behaviour loss mean_b Σ_j (ε_φ(α_t a + σ_t z, s, t) − z)², t ~ U(t_min, 1)."""
    t = seed_batch.rand(x.shape[0], device=x.device) * (1 - t_min) + t_min
    z = seed_batch.randn_like(x)
    alpha, sigma = (v.unsqueeze(-1) for v in vp_sde_alpha_sigma(t))
    return (net(alpha * x + sigma * z, obs, t) - z).pow(2).sum(-1).mean()
