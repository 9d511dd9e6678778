"""Diffusion Trusted Q-Learning (Chen, Wang, Zhou 2024), as the official code (docs/reference.md §2).

A diffusion behaviour model (EDM) defines a trust region for a one-step tanh-Gaussian policy:
L_π = α·L_TR − η·min Q + γ·L_ent. Stages: ``pretrain`` (behaviour model + critic, shared with
DTQL-KL) and ``train`` (critic → behaviour → policy → target, every step). Actions: softmax over the
target critic's Q of 1024 policy samples. Every quirk of §12 (#1–10) is the default.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import torch
from tensordict import TensorDict
from torch import nn

from offrl_zoo.algorithm import (
    Algorithm,
    BaseConfig,
    Stage,
    check_choice,
    check_positive,
    check_unit_interval,
    seeded_init,
)
from offrl_zoo.diffusion import EDM, EDMScoreNet, trust_region_loss
from offrl_zoo.nets import (
    EnsembleMLP,
    QEnsemble,
    TanhGaussianPolicy,
    describe_selection,
    frozen,
    frozen_copy,
    polyak_update_,
    select_candidates,
)
from offrl_zoo.nets.losses import expectile_loss, td_target
from offrl_zoo.optim import step_optimizer
from offrl_zoo.spec import DataSpec

SELECTIONS = ("softmax", "argmax", "policy")


@dataclass
class DTQLConfig(BaseConfig):
    steps: int = 1_000_000  # main-training steps (the official loop runs epochs × 1000 + 1)
    pretrain_steps: int = 50_000  # behaviour model + critic before the policy (50 "epochs")
    batch_size: int = 256
    sampling: str = "uniform"  # uniform | shuffled (shuffled with batch_size = dataset size is full-batch)
    lr: float = 3e-4  # policy and behaviour model
    critic_lr: float = 3e-4  # fixed for every task in the official code
    lr_decay: bool = False  # cosine to 0 over `steps` for all three optimisers (main training only)
    alpha: float = 1.0  # weight of the diffusion trust-region loss
    q_weight: float = 1.0  # η, weight of −min Q (1 in the D4RL code; the toy script's `eta`)
    gamma: float = 0.0  # weight of the dataset-action NLL term (the code's "entropy"); antmaze 1.0
    expectile: float = 0.7
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critic (used only to select actions)
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    clip_denoised: bool = True  # clip denoised actions to ±a_max in every diffusion loss (off in the toy script)
    score_hidden: int = 256
    score_time_dim: int = 16
    score_hidden_layers: int = 4
    critic_hidden: int = 256  # Q heads: 3 × (Linear–LayerNorm–Mish); V: 3 × (Linear–Mish)
    actor_hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    candidates: int = 1024  # policy samples scored by the target critic per action
    selection: str = "softmax"  # softmax (official, temperature 1 on raw Q) | argmax | policy (one raw sample)
    keep_ema: bool = False  # maintain the official EMA policy copy (never used for acting or targets)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "steps", "batch_size", "lr", "critic_lr", "candidates", "sigma_data", "sigma_min")
        check_unit_interval(self, "expectile", "discount", "tau")
        check_choice(self, "sampling", ("uniform", "shuffled"))
        check_choice(self, "selection", SELECTIONS)
        if self.pretrain_steps < 0 or self.alpha < 0 or self.gamma < 0:
            raise ValueError("pretrain_steps, alpha and gamma must be ≥ 0")


class DTQLCritic(nn.Module):
    """Twin Q with LayerNorm (vectorised) and a V without it, trained by one optimiser (§1.8)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.q = QEnsemble(obs_dim, action_dim, [hidden] * 3, n=2, act="mish", layer_norm=True)
        self.v = EnsembleMLP(1, obs_dim, [hidden] * 3, 1, act="mish")

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(obs)[0, :, 0]

    def q_min(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q(obs, action).min(0).values


class DTQL(Algorithm[DTQLConfig]):
    name = "dtql"
    Config = DTQLConfig
    summary = "Diffusion Trusted Q-Learning (Chen et al. 2024; official code)"
    deterministic_act_is_exact = False  # softmax selection draws candidates even for evaluation
    acting_keys = ("selection", "candidates")
    candidate_noun = "policy"  # what `sample_actions` draws, in the selection rule's words

    def __init__(self, spec: DataSpec, cfg: DTQLConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(spec, cfg, device)
        s, a = spec.obs_dim, spec.action_dim
        self.edm = EDM(cfg.sigma_data, cfg.sigma_min, cfg.sigma_max)
        self.clip = spec.max_action if cfg.clip_denoised else None
        with seeded_init("dtql-behaviour"):
            self.behaviour = EDMScoreNet(a, s, cfg.score_hidden, cfg.score_time_dim, cfg.score_hidden_layers)
        with seeded_init("dtql-critic"):
            self.critic = DTQLCritic(s, a, cfg.critic_hidden)
        self.critic_target = frozen_copy(self.critic)
        self.build_actor()
        self.to(self.device)
        self.optimizers["behaviour"] = self.make_optimizer(self.behaviour.parameters(), lr=cfg.lr)
        self.optimizers["critic"] = self.make_optimizer(self.critic.parameters(), lr=cfg.critic_lr)
        for name in self.actor_modules():
            self.optimizers[name] = self.make_optimizer(getattr(self, name).parameters(), lr=cfg.lr)
        if cfg.lr_decay:
            for key, opt in self.optimizers.items():
                self.schedulers[key] = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)

    # -- the policy: overridden by DTQL-KL ---------------------------------------------------------
    def build_actor(self) -> None:
        cfg = self.cfg
        self.actor = TanhGaussianPolicy(self.spec.obs_dim, self.spec.action_dim, cfg.actor_hidden, self.spec.max_action)
        if cfg.keep_ema:
            self.actor_ema = frozen_copy(self.actor)

    def actor_modules(self) -> tuple[str, ...]:
        """Modules trained by the policy step (each has an optimiser of the same name)."""
        return ("actor",)

    def sample_actions(self, obs: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        """``repeats`` policy samples per observation, (B·repeats, A) in ``repeat_interleave`` order."""
        return self.actor(obs, repeats=repeats)

    def actor_step(self, batch: TensorDict, step: int) -> dict[str, torch.Tensor]:
        cfg, obs = self.cfg, batch["observation"]
        action = self.actor(obs)
        tr_loss = trust_region_loss(self.edm, self.behaviour, action, obs, self.clip)
        with frozen(self.critic):
            q = self.critic.q_min(obs, action)
        loss = cfg.alpha * tr_loss - cfg.q_weight * q.mean()
        out = {"tr_loss": tr_loss.detach(), "q_policy": q.detach().mean()}
        if cfg.gamma > 0:
            nll = -self.actor.log_prob(obs, batch["action"]).mean()
            loss = loss + cfg.gamma * nll
            out["nll_loss"] = nll.detach()
        step_optimizer(self.optimizers["actor"], loss)
        if self.ema_due(step):
            polyak_update_(self.actor_ema, self.actor, 0.005)
        out["actor_loss"] = loss.detach()
        return out

    # -- stages -----------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        cfg = self.cfg
        stages = []
        if cfg.pretrain_steps > 0:
            shared = {
                "kind": "dtql-pretrain/1",
                "lr": cfg.lr,
                "critic_lr": cfg.critic_lr,
                "expectile": cfg.expectile,
                "discount": cfg.discount,
                "edm": [cfg.sigma_data, cfg.sigma_min, cfg.sigma_max],
                "clip": self.clip,
                "score": [cfg.score_hidden, cfg.score_time_dim, cfg.score_hidden_layers],
                "critic_hidden": cfg.critic_hidden,
            }
            stages.append(
                Stage(
                    "pretrain",
                    cfg.pretrain_steps,
                    cfg.batch_size,
                    self.pretrain_update,
                    modules=("behaviour", "critic"),
                    sampling=cfg.sampling,
                    has_policy=False,
                    shared=shared,
                )
            )
        modules = ("behaviour", "critic", "critic_target", *self.actor_modules())
        if cfg.keep_ema:
            modules += ("actor_ema",)
        stages.append(
            Stage(
                "train",
                cfg.steps,
                cfg.batch_size,
                self.update,
                modules=modules,
                sampling=cfg.sampling,
                after_update=self.scheduler_steps(),
                variant=self.train_variant,
            )
        )
        return stages

    def train_variant(self, step: int) -> Hashable:
        """The train step's code path (``Stage.variant``): whether the official EMA copy is due."""
        return self.ema_due(step)

    def ema_due(self, step: int) -> bool:
        return self.cfg.keep_ema and step % 5 == 0 and step >= 1000

    def pretrain_update(self, batch: TensorDict, step: int) -> TensorDict:
        bc_loss = self.behaviour_step(batch)
        critic_loss, v_loss = self.critic_step(batch)
        return TensorDict({"bc_loss": bc_loss, "critic_loss": critic_loss, "value_loss": v_loss})

    def update(self, batch: TensorDict, step: int) -> TensorDict:
        critic_loss, v_loss = self.critic_step(batch)
        bc_loss = self.behaviour_step(batch)
        out = self.actor_step(batch, step)
        polyak_update_(self.critic_target, self.critic, self.cfg.tau)
        return TensorDict({"critic_loss": critic_loss, "value_loss": v_loss, "bc_loss": bc_loss, **out})

    def behaviour_step(self, batch: TensorDict) -> torch.Tensor:
        loss = self.edm.loss(self.behaviour, batch["action"], batch["observation"], self.clip)
        step_optimizer(self.optimizers["behaviour"], loss)
        return loss.detach()

    def critic_step(self, batch: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
        """IQL-style losses with every term from the online critic (quirk #4): L_V + L_Q1 + L_Q2."""
        cfg, obs = self.cfg, batch["observation"]
        q = self.critic.q(obs, batch["action"])  # (2, B)
        v_loss = expectile_loss(q.detach().min(0).values - self.critic.value(obs), cfg.expectile)
        with torch.no_grad():
            next_v = self.critic.value(batch["next", "observation"])
            y = td_target(batch, next_v, cfg.discount)
        loss = v_loss + (q - y).pow(2).mean(1).sum()
        step_optimizer(self.optimizers["critic"], loss)
        return loss.detach(), v_loss.detach()

    # -- acting -----------------------------------------------------------------------------------
    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if self.cfg.selection == "policy":
            return self.sample_actions(obs)
        b, k = obs.shape[0], self.cfg.candidates
        candidates = self.sample_actions(obs, repeats=k)
        q = self.critic_target.q_min(obs.repeat_interleave(k, dim=0), candidates).reshape(b, k)
        return select_candidates(candidates, q, self.cfg.selection)

    def selection_rule(self, deterministic: bool) -> str:
        return describe_selection(self.cfg.selection, self.cfg.candidates, self.candidate_noun)
