"""The diffusion toolbox's maths pinned to docs/reference.md §1.5–1.7, §2.3c and §3.2."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from offrl_zoo.diffusion import (
    EDM,
    EDMScoreNet,
    GaussianFourierEmbedding,
    LearnableFourierEmbedding,
    ResNetNoiseNet,
    VPSchedule,
    dmd_distillation_loss,
    trust_region_loss,
)
from offrl_zoo.diffusion.vp_sde import vp_sde_alpha_sigma


def test_edm_scalings_at_known_sigmas():
    c_skip, c_out, c_in = EDM().scalings(torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(c_skip, torch.tensor([0.5, 0.2]))
    torch.testing.assert_close(c_out, torch.tensor([0.5 / math.sqrt(2), 0.5 / math.sqrt(1.25)]))
    torch.testing.assert_close(c_in, torch.tensor([math.sqrt(2), 1 / math.sqrt(1.25)]))
    assert EDM.c_noise(torch.tensor(math.e**4)).item() == pytest.approx(1.0)


def test_loglogistic_sigma_median_and_range():
    torch.manual_seed(0)
    sigma = EDM().sample_sigma(200_000, "cpu")
    assert sigma.dtype == torch.float32
    assert sigma.median().item() == pytest.approx(0.5, rel=0.01)
    assert sigma.min() >= 0.002 and sigma.max() <= 80.0
    # scale 0.5 on ln σ: the quartiles are at exp(ln 0.5 ± 0.5·ln 3)
    q = torch.quantile(sigma[:100_000], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(q, 0.5 * torch.tensor([3**-0.5, 3**0.5]), rtol=0.02, atol=0)


def test_vp_schedule_tables():
    s = VPSchedule(steps=5)
    torch.testing.assert_close(s.betas, torch.tensor([0.19587, 0.45882, 0.63578, 0.75488, 0.83503]), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        s.alpha_bars, torch.tensor([0.80413, 0.43518, 0.15850, 0.03885, 0.00641]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        s.posterior_var, torch.tensor([0.0, 0.15911, 0.42674, 0.66091, 0.80777]), atol=1e-5, rtol=0
    )


def test_vp_sde_reference_values():
    alpha, sigma = vp_sde_alpha_sigma(torch.tensor([0.02, 0.5, 0.98]))
    torch.testing.assert_close(alpha, torch.tensor([0.9970, 0.2812, 0.0080]), atol=1e-4, rtol=0)
    torch.testing.assert_close(sigma, torch.tensor([0.0772, 0.9597, 1.0]), atol=1e-4, rtol=0)


class Huge(nn.Module):
    def forward(self, x, obs, t):
        return torch.full_like(x, -1e3)


def test_dql_sampler_is_clipped_and_differentiable():
    s = VPSchedule()
    out = s.sample_posterior_mean(Huge(), torch.zeros(64, 3), action_dim=2, clip=1.0)
    assert out.shape == (64, 2) and out.abs().max() <= 1.0
    net = nn.Linear(1, 1)  # any trainable piece in the ε-net must receive gradient through all steps
    eps_net = lambda x, obs, t: net.weight * x  # noqa: E731
    s.sample_posterior_mean(eps_net, torch.zeros(8, 3), action_dim=2, clip=100.0).sum().backward()
    assert net.weight.grad is not None and net.weight.grad.abs() > 0
    ancestral = s.sample_ancestral(Huge(), torch.zeros(16, 3), action_dim=2)
    assert ancestral.abs().max() <= 1.0


def _tiny_score(seed: int = 0) -> EDMScoreNet:
    torch.manual_seed(seed)
    return EDMScoreNet(action_dim=2, obs_dim=3, hidden=16, time_dim=4)


@pytest.mark.parametrize("clip", [None, 1.0])
def test_trust_region_gradient_reaches_policy_by_both_paths_and_not_behaviour(clip):
    edm, net = EDM(), _tiny_score()
    obs = torch.randn(32, 3)
    action = (0.5 * torch.randn(32, 2)).requires_grad_(True)

    def grad_of(loss_fn) -> torch.Tensor:
        torch.manual_seed(1)  # identical σ and ε in every variant
        (g,) = torch.autograd.grad(loss_fn(), action)
        return g

    full = grad_of(lambda: trust_region_loss(edm, net, action, obs, clip))
    assert all(p.grad is None for p in net.parameters())  # frozen: no weight gradients built

    def loss_with(input_action, target_action):
        sigma = edm.sample_sigma(32, "cpu")
        noisy = input_action + sigma.unsqueeze(-1) * torch.randn_like(action)
        denoised = edm.denoise(net, noisy, obs, sigma)
        if clip is not None:
            denoised = denoised.clamp(-clip, clip)
        return ((denoised - target_action) / edm.scalings(sigma)[1].unsqueeze(-1)).pow(2).mean()

    through_input = grad_of(lambda: loss_with(action, action.detach()))
    through_target = grad_of(lambda: loss_with(action.detach(), action))
    assert through_input.abs().sum() > 0 and through_target.abs().sum() > 0
    torch.testing.assert_close(full, through_input + through_target, rtol=1e-4, atol=1e-6)
    assert all(p.requires_grad for p in net.parameters())  # unfrozen afterwards


def test_dmd_gradient_is_normalised_score_difference():
    edm, real, fake = EDM(), _tiny_score(0), _tiny_score(1)
    obs, action = torch.randn(16, 3), torch.randn(16, 2).requires_grad_(True)
    torch.manual_seed(3)
    (grad,) = torch.autograd.grad(dmd_distillation_loss(edm, real, fake, action, obs, None), action)
    torch.manual_seed(3)
    with torch.no_grad():
        sigma = edm.sample_sigma(16, "cpu")
        noisy = action + sigma.unsqueeze(-1) * torch.randn_like(action)
        d_real, d_fake = edm.denoise(real, noisy, obs, sigma), edm.denoise(fake, noisy, obs, sigma)
        g = (d_fake - d_real) / (action - d_real).abs().mean(1, keepdim=True)
    torch.testing.assert_close(grad, g / action.numel())


@pytest.mark.parametrize("embedding", [LearnableFourierEmbedding, GaussianFourierEmbedding])
def test_resnet_noise_net_takes_its_parts_from_the_caller(embedding):
    initialised: list[nn.Module] = []
    net = ResNetNoiseNet(3, 5, embedding(), nn.SiLU, initialised.append, hidden=16, blocks=2)
    assert initialised == [net.inp, net.out[1]]  # only the input and output Dense layers
    assert next(net.parameters()) is next(net.embed.parameters())  # the embedding is a registered submodule
    assert sum(isinstance(m, nn.SiLU) for m in net.modules()) == 3 + (embedding is LearnableFourierEmbedding)
    assert net(torch.zeros(4, 3), torch.zeros(4, 5), 0.5).shape == (4, 3)
    with pytest.raises(TypeError, match="nn.Module"):
        ResNetNoiseNet(3, 5, lambda t: t, nn.SiLU)
