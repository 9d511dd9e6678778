"""EDM ("Karras") diffusion as DTQL uses it (docs/reference.md §1.5, §2.3): VE noise x̃ = x + σε,
preconditioned denoiser, truncated log-logistic σ, and the (optionally clipped) denoising loss.

The diffusion trust-region loss (§2.3c) is the same denoising loss evaluated at the policy's own
actions with the behaviour model frozen; it has its own function so that no algorithm re-derives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from offrl_zoo.nets import seed_batch
from offrl_zoo.nets.mlp import frozen


@dataclass(frozen=True)
class EDM:
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    # Truncated log-logistic σ density: loc ln(σ_data), scale 0.5 (the official `loglogistic` option).
    loglogistic_scale: float = 0.5

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in) at noise level σ, with the shape of σ."""
        total = sigma.pow(2) + self.sigma_data**2
        return self.sigma_data**2 / total, sigma * self.sigma_data / total.sqrt(), total.rsqrt()

    @staticmethod
    def c_noise(sigma: torch.Tensor) -> torch.Tensor:
        return sigma.log() / 4

    def sample_sigma(self, n: int, device: torch.device | str) -> torch.Tensor:
        """n draws of σ ~ log-logistic(ln σ_data, 0.5) truncated to [σ_min, σ_max] (float64 inside)."""
        loc, scale = math.log(self.sigma_data), self.loglogistic_scale

        def cdf(s: float) -> float:
            return 1.0 / (1.0 + math.exp(-(math.log(s) - loc) / scale))

        lo, hi = cdf(self.sigma_min), cdf(self.sigma_max)
        u = seed_batch.rand(n, dtype=torch.float64, device=device) * (hi - lo) + lo
        return u.logit().mul(scale).add(loc).exp().float()

    def denoise(self, net: nn.Module, x_noisy: torch.Tensor, obs: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(x̃; σ, s) = c_skip·x̃ + c_out·F(c_in·x̃, s, c_noise(σ)); σ has shape (B,)."""
        c_skip, c_out, c_in = (c.unsqueeze(-1) for c in self.scalings(sigma))
        return c_skip * x_noisy + c_out * net(c_in * x_noisy, obs, self.c_noise(sigma))

    def loss(
        self,
        net: nn.Module,
        x: torch.Tensor,
        obs: torch.Tensor,
        clip: float | None = None,
        sigma: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        return_denoised: bool = False,
    ):
        """mean_{b,j} ((D̂ − x)/c_out)², D̂ = clip(D(x + σε; σ, s), ±clip) when ``clip`` is set.

        Without the clip this is the EDM loss (F − (x − c_skip·x̃)/c_out)², computed in that form as the
        official code does. ``sigma``/``noise`` are drawn when not given.
        """
        if sigma is None:
            sigma = self.sample_sigma(x.shape[0], x.device)
        if noise is None:
            noise = seed_batch.randn_like(x)
        x_noisy = x + sigma.unsqueeze(-1) * noise
        c_skip, c_out, c_in = (c.unsqueeze(-1) for c in self.scalings(sigma))
        raw = net(c_in * x_noisy, obs, self.c_noise(sigma))
        denoised = c_skip * x_noisy + c_out * raw
        if clip is not None:
            denoised = denoised.clamp(-clip, clip)
            loss = ((denoised - x) / c_out).pow(2).mean()
        else:
            loss = (raw - (x - c_skip * x_noisy) / c_out).pow(2).mean()
        return (loss, denoised) if return_denoised else loss


def trust_region_loss(edm: EDM, behaviour: nn.Module, action: torch.Tensor, obs: torch.Tensor, clip: float | None):
    """DTQL's diffusion trust-region loss L_TR(θ) = ℓ(a_θ, s, σ, ε; φ) (docs/reference.md §2.3c).

    The gradient reaches the policy's action through the noisy input and through the regression
    target; the behaviour model's parameters are frozen for this term, so no weight gradients are
    built for them (identical to the official code, which builds and then discards them).
    """
    with frozen(behaviour):
        return edm.loss(behaviour, action, obs, clip)


def dmd_distillation_loss(
    edm: EDM, real: nn.Module, fake: nn.Module, action: torch.Tensor, obs: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """DTQL-KL's reverse-KL (DMD/VSD) surrogate (docs/reference.md §3.2), whose gradient w.r.t. ``action``
    is g/(B·A) with g = (D_fake − D_real)/mean_j|a − D_real|, both denoisers at the same (σ, ε).

    Both denoisers run without gradient; only the generator's action carries one.
    """
    sigma = edm.sample_sigma(action.shape[0], action.device)
    with torch.no_grad():
        x_noisy = action + sigma.unsqueeze(-1) * seed_batch.randn_like(action)
        d_real = edm.denoise(real, x_noisy, obs, sigma)
        d_fake = edm.denoise(fake, x_noisy, obs, sigma)
        if clip is not None:
            d_real, d_fake = d_real.clamp(-clip, clip), d_fake.clamp(-clip, clip)
        grad = (d_fake - d_real) / (action - d_real).abs().mean(1, keepdim=True)
    return 0.5 * (action - (action - grad).detach()).pow(2).mean()
