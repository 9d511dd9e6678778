"""Diffusion toolbox shared by DTQL, DTQL-KL, DQL, IDQL and SRPO (docs/reference.md §1.4–1.7).

Split the way CleanDiffuser splits it, so that no algorithm carries its own copy:
- processes: ``edm`` (EDM/Karras, VE noise, DTQL), ``vp_discrete`` (T-step VP-DDPM, DQL/IDQL),
  ``vp_sde`` (continuous VP-SDE, SRPO);
- backbones: ``backbones`` (the ε/score networks of each method);
- conditioning on the noise level: ``embeddings`` (the three time embeddings).
"""

from offrl_zoo.diffusion.backbones import DQLNoiseNet, EDMScoreNet, ResNetNoiseNet
from offrl_zoo.diffusion.edm import EDM, dmd_distillation_loss, trust_region_loss
from offrl_zoo.diffusion.embeddings import GaussianFourierEmbedding, LearnableFourierEmbedding, SinusoidalEmbedding
from offrl_zoo.diffusion.vp_discrete import VPSchedule
from offrl_zoo.diffusion.vp_sde import vp_sde_alpha_sigma

__all__ = [
    "DQLNoiseNet",
    "EDM",
    "EDMScoreNet",
    "GaussianFourierEmbedding",
    "LearnableFourierEmbedding",
    "ResNetNoiseNet",
    "SinusoidalEmbedding",
    "VPSchedule",
    "dmd_distillation_loss",
    "trust_region_loss",
    "vp_sde_alpha_sigma",
]
