"""Soft Actor-Critic (Haarnoja et al. 2018, as in rlkit, which made the D4RL locomotion data).

Used only to train the behaviour policies that generate the offline datasets: a tanh-Gaussian actor and
twin Q-heads, 256×256 ReLU MLPs (D4RL's sizes), automatic entropy tuning towards −|A|, Polyak targets.
Built from the project's networks (``TanhGaussianPolicy``, ``QEnsemble``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict
from torch import nn

from offrl_zoo.nets import QEnsemble, TanhGaussianPolicy, frozen, frozen_copy, polyak_update_
from offrl_zoo.nets.losses import not_done
from offrl_zoo.optim import TrainableModule, make_optimizer, step_optimizer


@dataclass
class SACConfig:
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 3e-4  # actor, critic and temperature (rlkit: policy_lr = qf_lr = 3e-4)
    discount: float = 0.99
    tau: float = 5e-3
    batch_size: int = 256
    # Uniform random actions before the first update (rlkit explores with the initial policy for
    # 1 000 steps; random actions for a few thousand steps is the common SAC practice and learns faster).
    start_steps: int = 5000
    log_std_min: float = -20.0  # rlkit's LOG_SIG_MIN / LOG_SIG_MAX
    log_std_max: float = 2.0
    fused_adam: bool = True  # one fused kernel per optimiser step (same maths as the for-loop Adam)
    # null: rlkit's automatic entropy tuning (D4RL's setting). A number fixes the temperature α instead,
    # as the original SAC paper did; auto-tuned SAC can stall on Hopper (≈ 300 return for 100 k+ steps here).
    fixed_alpha: float | None = None

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        for key in ("lr", "tau", "batch_size"):
            if not getattr(self, key) > 0:
                raise ValueError(f"sac {key}={getattr(self, key)!r}: expected a positive number")
        if not 0 < self.discount < 1:
            raise ValueError(f"sac discount={self.discount!r}: expected a value in (0, 1)")
        if self.start_steps < 0:
            raise ValueError(f"sac start_steps={self.start_steps!r}: expected a number ≥ 0")
        if self.fixed_alpha is not None and not self.fixed_alpha > 0:
            raise ValueError(f"sac fixed_alpha={self.fixed_alpha!r}: expected a positive number or null")


def make_actor(obs_dim: int, action_dim: int, cfg: SACConfig) -> TanhGaussianPolicy:
    """The behaviour-policy network: its weights are what the package ships."""
    return TanhGaussianPolicy(
        obs_dim,
        action_dim,
        cfg.hidden,
        max_action=1.0,
        log_std_min=cfg.log_std_min,
        log_std_max=cfg.log_std_max,
        init="torch",
    )


class SAC(TrainableModule):
    """Networks and optimisers; ``training_state()`` is what its checkpoints hold."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: SACConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.actor = make_actor(obs_dim, action_dim, cfg)
        self.critic = QEnsemble(obs_dim, action_dim, cfg.hidden, n=2)
        self.critic_target = frozen_copy(self.critic)
        initial = 0.0 if cfg.fixed_alpha is None else math.log(cfg.fixed_alpha)
        self.log_alpha = nn.Parameter(torch.full((), initial), requires_grad=cfg.fixed_alpha is None)
        self.target_entropy = -float(action_dim)
        self.optimizers = {
            "actor": make_optimizer(self.actor.parameters(), cfg.fused_adam, lr=cfg.lr),
            "critic": make_optimizer(self.critic.parameters(), cfg.fused_adam, lr=cfg.lr),
            "alpha": make_optimizer([self.log_alpha], cfg.fused_adam, lr=cfg.lr),
        }
        self.schedulers = {}  # constant learning rates

    def update(self, batch: TensorDict) -> TensorDict:
        """Temperature, actor, then critic (rlkit's order), then the Polyak target step; no host sync."""
        cfg = self.cfg
        obs, action = batch["observation"], batch["action"]
        next_obs, reward = batch["next", "observation"], batch["next", "reward"].reshape(-1)

        new_action, log_prob = self.actor.sample_with_log_prob(obs)
        if self.cfg.fixed_alpha is None:
            alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
            step_optimizer(self.optimizers["alpha"], alpha_loss)
        alpha = self.log_alpha.detach().exp()

        with frozen(self.critic):
            q_new = self.critic(obs, new_action).min(0).values
        actor_loss = (alpha * log_prob - q_new).mean()
        step_optimizer(self.optimizers["actor"], actor_loss)

        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample_with_log_prob(next_obs)
            next_q = self.critic_target(next_obs, next_action).min(0).values - alpha * next_log_prob
            target = reward + cfg.discount * not_done(batch) * next_q
        q = self.critic(obs, action)
        critic_loss = (q - target).pow(2).mean(-1).sum()  # each head's MSE, summed (rlkit: qf1 + qf2 losses)
        step_optimizer(self.optimizers["critic"], critic_loss)
        polyak_update_(self.critic_target, self.critic, cfg.tau)
        return TensorDict(
            {
                "critic_loss": critic_loss.detach(),
                "actor_loss": actor_loss.detach(),
                "alpha": alpha,
                "entropy": -log_prob.detach().mean(),
                "q": q.detach().mean(),
            }
        )
