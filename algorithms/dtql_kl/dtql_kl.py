"""DTQL-KL: DTQL with the trust-region loss replaced by a reverse-KL (DMD/VSD) distillation of the
behaviour model into an implicit one-step generator (DTQL paper App. D; docs/reference.md §3).

Same critic, behaviour model, pretraining stage (shared with DTQL) and action selection as DTQL. The
generator G(z, s, σ_g) with z ~ N(0, σ_g²I) and a fake-score model that tracks the generator's
distribution are both initialised from the behaviour model when main training starts.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import check_choice, check_positive
from offrl_zoo.diffusion import EDMScoreNet, dmd_distillation_loss
from offrl_zoo.nets import frozen, seed_batch
from offrl_zoo.optim import step_optimizer

from ..dtql.dtql import DTQL, DTQLConfig


@dataclass
class DTQLKLConfig(DTQLConfig):
    generation_sigma: float = 2.5  # σ_g: noise scale of z, also fed raw into the time embedding (quirk #11)
    # Start of main training: copy the (pretrained) behaviour weights into the generator / fake score
    # (official D4RL code), or keep their own random init (the official toy script without --pretrain_diffusion).
    generator_init: str = "behaviour"
    fake_score_init: str = "behaviour"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "generation_sigma")
        check_choice(self, "generator_init", ("behaviour", "random"))
        check_choice(self, "fake_score_init", ("behaviour", "random"))
        if self.gamma != 0:
            raise ValueError(f"gamma={self.gamma}: DTQL-KL's implicit generator has no log-density; use gamma=0")
        if self.keep_ema:
            raise ValueError("keep_ema: the (unused) EMA copy is kept for DTQL's policy only")


class DTQLKL(DTQL):
    name = "dtql-kl"
    Config = DTQLKLConfig
    cfg: DTQLKLConfig  # DTQL's methods read the DTQLConfig fields it extends
    summary = "DTQL with KL/VSD (DMD-style) distillation into an implicit generator (DTQL paper App. D)"
    candidate_noun = "generator"

    def build_actor(self) -> None:
        cfg, s, a = self.cfg, self.spec.obs_dim, self.spec.action_dim
        self.generator = EDMScoreNet(a, s, cfg.score_hidden, cfg.score_time_dim, cfg.score_hidden_layers)
        self.fake_score = EDMScoreNet(a, s, cfg.score_hidden, cfg.score_time_dim, cfg.score_hidden_layers)

    def actor_modules(self) -> tuple[str, ...]:
        return ("generator", "fake_score")

    def sample_actions(self, obs: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        if repeats > 1:  # the generator's output depends on its noise: one pass per candidate
            obs = obs.repeat_interleave(repeats, dim=0)
        sigma = self.cfg.generation_sigma
        z = sigma * seed_batch.randn(obs.shape[0], self.spec.action_dim, device=obs.device)
        return self.generator(z, obs, sigma)  # no preconditioning, no clip: the raw network output

    @torch.no_grad()
    def _init_from_behaviour(self) -> None:
        """Copy the behaviour weights in place (``load_state_dict`` would do the same, but cannot be traced)."""
        source = [*self.behaviour.parameters(), *self.behaviour.buffers()]
        for key, net in (("generator_init", self.generator), ("fake_score_init", self.fake_score)):
            if getattr(self.cfg, key) == "behaviour":
                for target, value in zip([*net.parameters(), *net.buffers()], source, strict=True):
                    target.copy_(value)

    def train_variant(self, step: int) -> Hashable:
        """The train step's code path: the first copies the behaviour weights into the generator."""
        return step == 0, super().train_variant(step)

    def actor_step(self, batch: TensorDict, step: int) -> dict[str, torch.Tensor]:
        cfg, obs = self.cfg, batch["observation"]
        if step == 0:
            self._init_from_behaviour()
        action = self.sample_actions(obs)
        kl_loss = dmd_distillation_loss(self.edm, self.behaviour, self.fake_score, action, obs, self.clip)
        with frozen(self.critic):
            q = self.critic.q_min(obs, action)
        loss = cfg.alpha * kl_loss - cfg.q_weight * q.mean()
        step_optimizer(self.optimizers["generator"], loss)
        fake_loss = self.edm.loss(self.fake_score, action.detach(), obs, self.clip)
        step_optimizer(self.optimizers["fake_score"], fake_loss)
        return {
            "kl_loss": kl_loss.detach(),
            "q_policy": q.detach().mean(),
            "actor_loss": loss.detach(),
            "fake_score_loss": fake_loss.detach(),
        }
