"""Implicit Q-Learning (Kostrikov, Nair, Levine 2021), as the original JAX code (docs/reference.md §7).

CORL's PyTorch variant is the ``corl`` preset (``--preset corl``): state normalisation, PyTorch init,
critic loss averaged over heads, its step order, and its per-task table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import Algorithm, BaseConfig, Stage, check_choice, check_positive, check_unit_interval
from offrl_zoo.nets import DeterministicActor, EnsembleMLP, GaussianPolicy, QEnsemble, frozen_copy, polyak_update_
from offrl_zoo.nets.losses import expectile_loss, td_target
from offrl_zoo.optim import step_optimizer
from offrl_zoo.spec import DataSpec


@dataclass
class IQLConfig(BaseConfig):
    clip_actions: float | None = 1 - 1e-5  # the original clips dataset actions to ±(1 − 1e−5)
    steps: int = 1_000_000
    batch_size: int = 256
    actor_lr: float = 3e-4
    value_lr: float = 3e-4
    critic_lr: float = 3e-4
    actor_cosine_decay: bool = True  # actor lr decays to 0 over `steps` (cosine; kept at 1 M when --steps caps)
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # ReLU MLPs: Q heads, V, policy
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critic
    expectile: float = 0.7  # τ_e of the value's expectile regression
    beta: float = 3.0  # AWR inverse temperature: w = min(exp(β·(Q − V)), 100)
    max_weight: float = 100.0
    actor_dropout: float = 0.0  # dropout after each hidden activation of the policy (0.1 on kitchen/pen)
    log_std_min: float = -5.0  # clip of the state-independent log-std
    log_std_max: float = 2.0
    deterministic_actor: bool = False  # CORL option: tanh actor trained by weighted MSE
    init: str = "orthogonal"  # orthogonal (jaxrl default_init: gain √2, zero bias) | torch (CORL)
    step_order: str = "original"  # original: V → actor → Q → target | corl: V → Q → actor → target
    critic_loss_mean_heads: bool = False  # CORL averages the two heads' MSE; the original sums them

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "steps", "batch_size", "actor_lr", "value_lr", "critic_lr", "beta", "max_weight")
        check_unit_interval(self, "discount", "tau", "expectile")
        check_choice(self, "init", ("orthogonal", "torch"))
        check_choice(self, "step_order", ("original", "corl"))
        if not 0 <= self.actor_dropout < 1:
            raise ValueError(f"actor_dropout={self.actor_dropout}: expected a value in [0, 1)")


class IQL(Algorithm[IQLConfig]):
    name = "iql"
    Config = IQLConfig
    summary = "Implicit Q-Learning (Kostrikov et al. 2021; original JAX code, CORL as preset)"

    def __init__(self, spec: DataSpec, cfg: IQLConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(spec, cfg, device)
        s, a = spec.obs_dim, spec.action_dim
        self.critic = QEnsemble(s, a, cfg.hidden, n=2, act="relu")
        self.value = EnsembleMLP(1, s, cfg.hidden, 1, act="relu")
        if cfg.init == "orthogonal":
            self.critic.body.orthogonal_()
            self.value.orthogonal_()
        if cfg.deterministic_actor:
            self.actor: DeterministicActor | GaussianPolicy = DeterministicActor(
                s, a, cfg.hidden, spec.max_action, init=cfg.init
            )
        else:
            self.actor = GaussianPolicy(
                s, a, cfg.hidden, cfg.log_std_min, cfg.log_std_max, dropout=cfg.actor_dropout, init=cfg.init
            )
        self.critic_target = frozen_copy(self.critic)
        self.to(self.device)
        self.optimizers["actor"] = self.make_optimizer(self.actor.parameters(), lr=cfg.actor_lr)
        self.optimizers["value"] = self.make_optimizer(self.value.parameters(), lr=cfg.value_lr)
        self.optimizers["critic"] = self.make_optimizer(self.critic.parameters(), lr=cfg.critic_lr)
        if cfg.actor_cosine_decay:
            self.schedulers["actor"] = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizers["actor"], T_max=cfg.steps
            )

    def stages(self) -> list[Stage]:
        modules = ("actor", "value", "critic", "critic_target")
        cfg = self.cfg
        return [
            Stage("train", cfg.steps, cfg.batch_size, self.update, modules=modules, after_update=self.scheduler_steps())
        ]

    def v(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value(obs)[0, :, 0]

    def update(self, batch: TensorDict, step: int) -> TensorDict:
        obs, action = batch["observation"], batch["action"]
        with torch.no_grad():
            target_q = self.critic_target(obs, action).min(0).values
        if self.cfg.step_order == "original":
            value_loss = self._value_step(obs, target_q)
            actor_loss = self._actor_step(obs, action, target_q)
            critic_loss, q = self._critic_step(batch)
        else:  # CORL: V(s') before any update, Q from it, actor with the pre-update advantage
            with torch.no_grad():
                next_v = self.v(batch["next", "observation"])
                adv = target_q - self.v(obs)
            value_loss = self._value_step(obs, target_q)
            critic_loss, q = self._critic_step(batch, next_v)
            actor_loss = self._actor_step(obs, action, target_q, adv)
        polyak_update_(self.critic_target, self.critic, self.cfg.tau)
        return TensorDict(
            {"value_loss": value_loss, "actor_loss": actor_loss, "critic_loss": critic_loss, "q_mean": q.mean()}
        )

    def _value_step(self, obs: torch.Tensor, target_q: torch.Tensor) -> torch.Tensor:
        loss = expectile_loss(target_q - self.v(obs), self.cfg.expectile)
        step_optimizer(self.optimizers["value"], loss)
        return loss.detach()

    def _actor_step(self, obs, action, target_q, adv: torch.Tensor | None = None) -> torch.Tensor:
        if adv is None:
            with torch.no_grad():
                adv = target_q - self.v(obs)
        weight = torch.exp(self.cfg.beta * adv).clamp(max=self.cfg.max_weight)
        if isinstance(self.actor, DeterministicActor):  # cfg.deterministic_actor
            per_sample = (self.actor(obs) - action).pow(2).sum(-1)
        else:
            per_sample = -self.actor.log_prob(obs, action)
        loss = (weight * per_sample).mean()
        step_optimizer(self.optimizers["actor"], loss)
        return loss.detach()

    def _critic_step(self, batch: TensorDict, next_v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if next_v is None:
            with torch.no_grad():
                next_v = self.v(batch["next", "observation"])
        y = td_target(batch, next_v, self.cfg.discount)
        q = self.critic(batch["observation"], batch["action"])  # (2, B)
        per_head = (q - y).pow(2).mean(1)
        loss = per_head.mean() if self.cfg.critic_loss_mean_heads else per_head.sum()
        step_optimizer(self.optimizers["critic"], loss)
        return loss.detach(), q.detach()

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if self.cfg.deterministic_actor:
            return self.actor(obs)
        return self.actor(obs, deterministic=deterministic)

    def selection_rule(self, deterministic: bool) -> str:
        return "policy mean (clipped to the action box)" if deterministic else "Gaussian policy sample"
