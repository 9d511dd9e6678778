"""TD3+BC (Fujimoto & Gu 2021), as the original code (docs/reference.md §8)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import Algorithm, BaseConfig, Stage, check_positive, check_unit_interval
from offrl_zoo.nets import DeterministicActor, QEnsemble, frozen, frozen_copy, polyak_update_, seed_batch
from offrl_zoo.nets.losses import td_target
from offrl_zoo.optim import step_optimizer
from offrl_zoo.spec import DataSpec


@dataclass
class TD3BCConfig(BaseConfig):
    normalize_obs: bool = True  # per-dimension mean/std of dataset states, eps 1e-3 on the std
    steps: int = 1_000_000
    batch_size: int = 256
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # ReLU, actor and both critic heads
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target actor and critics
    alpha: float = 2.5  # λ = α / mean|Q1(s, π(s))| weights the Q term against the BC term
    policy_noise: float = 0.2  # target policy smoothing noise std, × a_max
    noise_clip: float = 0.5  # smoothing noise clipped to ±noise_clip · a_max
    policy_freq: int = 2  # actor and target updates every policy_freq-th critic step

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "steps", "batch_size", "actor_lr", "critic_lr", "policy_freq", "alpha")
        check_unit_interval(self, "discount", "tau")


class TD3BC(Algorithm[TD3BCConfig]):
    name = "td3bc"
    Config = TD3BCConfig
    summary = "TD3+BC (Fujimoto & Gu 2021; sfujim/TD3_BC)"
    samples_actions = False  # a deterministic actor

    def __init__(self, spec: DataSpec, cfg: TD3BCConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(spec, cfg, device)
        self.max_action = spec.max_action
        self.actor = DeterministicActor(spec.obs_dim, spec.action_dim, cfg.hidden, self.max_action)
        self.critic = QEnsemble(spec.obs_dim, spec.action_dim, cfg.hidden, n=2, act="relu")
        self.actor_target = frozen_copy(self.actor)
        self.critic_target = frozen_copy(self.critic)
        self.to(self.device)
        self.optimizers["actor"] = self.make_optimizer(self.actor.parameters(), lr=cfg.actor_lr)
        self.optimizers["critic"] = self.make_optimizer(self.critic.parameters(), lr=cfg.critic_lr)

    def stages(self) -> list[Stage]:
        modules = ("actor", "critic", "actor_target", "critic_target")
        stage = Stage(
            "train", self.cfg.steps, self.cfg.batch_size, self.update, modules=modules, variant=self.actor_due
        )
        return [stage]

    def actor_due(self, step: int) -> bool:
        """Whether the delayed actor and the targets update at ``step`` (the original counts iterations from 1);
        the step's code path (``Stage.variant``)."""
        return (step + 1) % self.cfg.policy_freq == 0

    def update(self, batch: TensorDict, step: int) -> TensorDict:
        cfg, a_max = self.cfg, self.max_action
        obs, action, next_obs = batch["observation"], batch["action"], batch["next", "observation"]
        with torch.no_grad():
            noise = (seed_batch.randn_like(action) * cfg.policy_noise * a_max).clamp(
                -cfg.noise_clip * a_max, cfg.noise_clip * a_max
            )
            next_action = (self.actor_target(next_obs) + noise).clamp(-a_max, a_max)
            target_q = self.critic_target(next_obs, next_action).min(0).values
            y = td_target(batch, target_q, cfg.discount)
        q = self.critic(obs, action)  # (2, B)
        critic_loss = (q - y).pow(2).mean(1).sum()  # MSE(Q1, y) + MSE(Q2, y)
        step_optimizer(self.optimizers["critic"], critic_loss)
        metrics = {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean()}

        if self.actor_due(step):
            pi = self.actor(obs)
            with frozen(self.critic):
                q1 = self.critic(obs, pi)[0]
            lmbda = cfg.alpha / q1.abs().mean().detach()
            bc_loss = (pi - action).pow(2).mean()
            actor_loss = -lmbda * q1.mean() + bc_loss
            step_optimizer(self.optimizers["actor"], actor_loss)
            polyak_update_(self.actor_target, self.actor, cfg.tau)
            polyak_update_(self.critic_target, self.critic, cfg.tau)
            metrics.update(actor_loss=actor_loss.detach(), bc_loss=bc_loss.detach(), lmbda=lmbda)
        return TensorDict(metrics)

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(obs)
