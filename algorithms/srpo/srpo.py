"""Score-Regularized Policy Optimization (Chen et al. 2023), as the official code thu-ml/SRPO (docs/reference.md §6).

Three stages, the official code's three phases: ``behaviour`` (VP-SDE ε-model of the data, §6.2) and
``critic`` (IQL, §6.3) are independent and *shared*; ``policy`` (§6.4) trains a deterministic tanh policy
with L = mean_b[ω(t)·⟨sg(ε̂), a⟩ − β·⟨sg(∇_a Q̄), a⟩], whose gradient is the diffusion score (a KL
regulariser towards the behaviour model) against the critic's action gradient. Acting: the policy output.
Every quirk of §12 #19 is the default; each alternative is a flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import (
    Algorithm,
    BaseConfig,
    Stage,
    check_choice,
    check_positive,
    check_unit_interval,
    seeded_init,
)
from offrl_zoo.diffusion import GaussianFourierEmbedding, ResNetNoiseNet, vp_sde_alpha_sigma
from offrl_zoo.diffusion.vp_sde import vp_sde_eps_loss
from offrl_zoo.nets import DeterministicActor, EnsembleMLP, Mish, QEnsemble, frozen_copy, polyak_update_, seed_batch
from offrl_zoo.nets.losses import expectile_loss, td_target
from offrl_zoo.optim import step_optimizer
from offrl_zoo.spec import DataSpec

BEHAVIOUR_T_MIN = 1e-3  # behaviour loss: t ~ U(1e-3, 1)
POLICY_T_RANGE = (0.02, 0.98)  # policy loss: t ~ U(0.02, 0.98)
NO_BETA = "the official code has no β for this task"


@dataclass
class SRPOConfig(BaseConfig):
    behaviour_steps: int = 2_000_000  # 200 "epochs" × 10 000 steps
    behaviour_batch_size: int = 2048
    critic_steps: int = 1_500_000  # 150 × 10 000
    critic_batch_size: int = 256
    steps: int = 1_000_000  # policy steps, 100 × 10 000
    batch_size: int = 256  # policy batch
    sampling: str = "shuffled"  # the official loader: sequential slices of a reshuffled copy (every phase)
    behaviour_lr: float = 3e-4  # AdamW
    behaviour_weight_decay: float = 0.01  # PyTorch AdamW's default
    score_hidden: int = 256
    score_blocks: int = 3  # `actor_blocks`
    score_dropout: float = 0.1
    critic_lr: float = 3e-4  # Q and V (two Adams)
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])  # ReLU, Q heads and V
    expectile: float = 0.7  # 0.9 on antmaze
    discount: float = 0.99
    tau: float = 0.005
    awr_monitor: bool = False  # train the official critic script's monitoring AWR policy (unused by SRPO)
    awr_beta: float = 3.0  # its weights min(exp(β_awr·(Q̄ − V)), 100); 10 on antmaze
    policy_lr: float = 3e-4  # cosine to 0 over `steps`
    policy_hidden: int = 256
    policy_layers: int = 2  # 4 on antmaze
    # Placeholder only: every registered task gets β from tasks.yaml or is unsupported (no silent guess).
    beta: float = 0.05
    weighting: str = "vds"  # ω(t): vds = σ_t² (official default) | stable = 1 | score = α_t/σ_t
    eps_baseline: bool = False  # the official "noise" variant: ε̂ − z (SDS baseline)
    q_reduce: str = "mean"  # ∇_a of the mean of the target heads (official) | min
    regq: bool = False  # per-sample RMS normalisation of ∇_a Q (official on antmaze)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(
            self,
            "behaviour_steps",
            "behaviour_batch_size",
            "critic_steps",
            "critic_batch_size",
            "steps",
            "batch_size",
            "behaviour_lr",
            "critic_lr",
            "policy_lr",
            "score_hidden",
            "score_blocks",
            "policy_hidden",
            "policy_layers",
            "awr_beta",
        )
        check_unit_interval(self, "expectile", "discount", "tau")
        check_choice(self, "sampling", ("uniform", "shuffled"))
        check_choice(self, "weighting", ("vds", "stable", "score"))
        check_choice(self, "q_reduce", ("mean", "min"))
        if self.beta < 0 or self.behaviour_weight_decay < 0 or not 0 <= self.score_dropout < 1:
            raise ValueError("beta and behaviour_weight_decay must be ≥ 0 and score_dropout in [0, 1)")


class SRPO(Algorithm[SRPOConfig]):
    name = "srpo"
    Config = SRPOConfig
    summary = "Score-Regularized Policy Optimization (Chen et al. 2023; official code thu-ml/SRPO)"
    unsupported_tasks = {
        "pen-*|kitchen-*": (NO_BETA, "beta"),
        # The official β table covers only the v2 medium / medium-replay / medium-expert locomotion and v2
        # antmaze datasets; every other dataset (user data included) needs β from the user.
        "*-random-v*|*-full-replay-v*|halfcheetah-expert-v*|hopper-expert-v*|walker2d-expert-v*|*-v0|*-v1|custom:*": (
            NO_BETA + " (its table has only the v2 medium, medium-replay, medium-expert and antmaze sets)",
            "beta",
        ),
    }
    samples_actions = False  # a deterministic actor

    def __init__(self, spec: DataSpec, cfg: SRPOConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(spec, cfg, device)
        s, a = spec.obs_dim, spec.action_dim
        with seeded_init("srpo-behaviour"):
            self.behaviour = ResNetNoiseNet(
                a,
                s,
                time_embedding=GaussianFourierEmbedding(),
                act=Mish,
                hidden=cfg.score_hidden,
                blocks=cfg.score_blocks,
                dropout=cfg.score_dropout,
            )
        with seeded_init("srpo-critic"):  # PyTorch default init, as the official TwinQ / ValueFunction
            self.critic = QEnsemble(s, a, cfg.critic_hidden, n=2, act="relu")
            self.value = EnsembleMLP(1, s, cfg.critic_hidden, 1, act="relu")
            if cfg.awr_monitor:
                self.awr_actor = DeterministicActor(s, a, [256, 256], spec.max_action)
        self.critic_target = frozen_copy(self.critic)
        self.actor = DeterministicActor(s, a, [cfg.policy_hidden] * cfg.policy_layers, spec.max_action)
        self.to(self.device)
        self.optimizers["behaviour"] = self.make_optimizer(
            self.behaviour.parameters(), torch.optim.AdamW, lr=cfg.behaviour_lr, weight_decay=cfg.behaviour_weight_decay
        )
        self.optimizers["critic"] = self.make_optimizer(self.critic.parameters(), lr=cfg.critic_lr)
        self.optimizers["value"] = self.make_optimizer(self.value.parameters(), lr=cfg.critic_lr)
        self.optimizers["actor"] = self.make_optimizer(self.actor.parameters(), lr=cfg.policy_lr)
        self.schedulers["actor"] = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizers["actor"], cfg.steps)
        if cfg.awr_monitor:
            self.optimizers["awr_actor"] = self.make_optimizer(self.awr_actor.parameters(), lr=3e-4)
            self.schedulers["awr_actor"] = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizers["awr_actor"], cfg.critic_steps
            )

    def stages(self) -> list[Stage]:
        cfg = self.cfg
        behaviour = {
            "kind": "srpo-behaviour/1",
            "lr": cfg.behaviour_lr,
            "weight_decay": cfg.behaviour_weight_decay,
            "net": [cfg.score_hidden, cfg.score_blocks, cfg.score_dropout],
            "t_min": BEHAVIOUR_T_MIN,
            "vp_sde": [0.1, 20.0],
        }
        critic = {
            "kind": "srpo-critic/1",
            "lr": cfg.critic_lr,
            "hidden": list(cfg.critic_hidden),
            "expectile": cfg.expectile,
            "discount": cfg.discount,
            "tau": cfg.tau,
            "awr_beta": cfg.awr_beta if cfg.awr_monitor else None,
        }
        critic_modules = ("critic", "value", "critic_target") + (("awr_actor",) if cfg.awr_monitor else ())
        return [
            Stage(
                "behaviour",
                cfg.behaviour_steps,
                cfg.behaviour_batch_size,
                self.behaviour_update,
                modules=("behaviour",),
                sampling=cfg.sampling,
                has_policy=False,
                shared=behaviour,
            ),
            Stage(
                "critic",
                cfg.critic_steps,
                cfg.critic_batch_size,
                self.critic_update,
                modules=critic_modules,
                sampling=cfg.sampling,
                has_policy=cfg.awr_monitor,
                shared=critic,
                after_update=self.scheduler_steps("awr_actor"),
            ),
            Stage(
                "policy",
                cfg.steps,
                cfg.batch_size,
                self.policy_update,
                modules=("actor",),
                sampling=cfg.sampling,
                after_update=self.scheduler_steps("actor"),
            ),
        ]

    def v(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value(obs)[0, :, 0]

    def behaviour_update(self, batch: TensorDict, step: int) -> TensorDict:
        loss = vp_sde_eps_loss(self.behaviour, batch["action"], batch["observation"], BEHAVIOUR_T_MIN)
        step_optimizer(self.optimizers["behaviour"], loss)
        return TensorDict({"behaviour_loss": loss.detach()})

    def critic_update(self, batch: TensorDict, step: int) -> TensorDict:
        """§6.3: V step on min target Q, then Q step towards r + γ·m·V(s') with the *pre-update* V, Polyak."""
        cfg, obs, action = self.cfg, batch["observation"], batch["action"]
        with torch.no_grad():
            target_q = self.critic_target(obs, action).min(0).values
            next_v = self.v(batch["next", "observation"])
        value_loss = expectile_loss(target_q - self.v(obs), cfg.expectile)
        step_optimizer(self.optimizers["value"], value_loss)
        y = td_target(batch, next_v, cfg.discount)
        q = self.critic(obs, action)  # (2, B)
        critic_loss = (q - y).pow(2).mean(1).mean()  # ½ Σ_i mean_b (Q_i − y)²
        step_optimizer(self.optimizers["critic"], critic_loss)
        polyak_update_(self.critic_target, self.critic, cfg.tau)
        out = {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(), "q_mean": q.detach().mean()}
        if cfg.awr_monitor:  # after the critic update, with the new V and target, as the official script
            with torch.no_grad():
                adv = self.critic_target(obs, action).min(0).values - self.v(obs)
            weight = torch.exp(cfg.awr_beta * adv).clamp(max=100.0)
            awr_loss = (weight * (self.awr_actor(obs) - action).pow(2).sum(-1)).mean()
            step_optimizer(self.optimizers["awr_actor"], awr_loss)
            out["awr_loss"] = awr_loss.detach()
        return TensorDict(out)

    def policy_loss(self, obs: torch.Tensor, action: torch.Tensor, t: torch.Tensor, z: torch.Tensor):
        """(L_SRPO, mean Q̄) for policy actions ``action`` at diffusion times ``t`` (B,) with noise ``z`` (§6.4).

        ∇_a L per sample = (ω(t)·ε̂ − β·g) / B: ε̂ is the frozen behaviour model's noise prediction at
        a_t = α_t a + σ_t z (its α_t chain factor omitted, as the official code), g = ∇_a Q̄ at sg(a).
        """
        cfg = self.cfg
        alpha, sigma = vp_sde_alpha_sigma(t)
        was_training = self.behaviour.training
        self.behaviour.eval()  # dropout off while it scores the policy's actions
        with torch.no_grad():
            eps = self.behaviour(alpha[:, None] * action + sigma[:, None] * z, obs, t)
        self.behaviour.train(was_training)
        if cfg.eps_baseline:
            eps = eps - z
        if cfg.weighting == "vds":
            weight = sigma.pow(2)
        elif cfg.weighting == "score":
            weight = alpha / sigma
        else:
            weight = torch.ones_like(sigma)

        def q_sum(a: torch.Tensor) -> torch.Tensor:  # the target critic is frozen: no weight gradients
            heads = self.critic_target(obs, a)
            return (heads.mean(0) if cfg.q_reduce == "mean" else heads.min(0).values).sum()

        g, q_total = seed_batch.input_grad(q_sum, action.detach())
        if cfg.regq:
            g = g / g.pow(2).mean(-1, keepdim=True).sqrt()
        loss = (weight * (eps * action).sum(-1) - cfg.beta * (g * action).sum(-1)).mean()
        return loss, q_total.detach() / action.shape[0]

    def policy_update(self, batch: TensorDict, step: int) -> TensorDict:
        obs = batch["observation"]
        action = self.actor(obs)
        low, high = POLICY_T_RANGE
        t = seed_batch.rand(obs.shape[0], device=obs.device) * (high - low) + low
        loss, q = self.policy_loss(obs, action, t, seed_batch.randn_like(action))
        step_optimizer(self.optimizers["actor"], loss)
        return TensorDict({"policy_loss": loss.detach(), "q_policy": q})

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        # Evaluations during the critic stage (awr_monitor) score the monitoring policy, as the official
        # critic script; the SRPO policy takes over once it has taken a step (its scheduler has moved).
        if self.cfg.awr_monitor and self.schedulers["actor"].last_epoch == 0:
            return self.awr_actor(obs)
        return self.actor(obs)
