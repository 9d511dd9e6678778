"""Diffusion-QL (Wang, Hunt, Zhou 2022), as the official code (docs/reference.md §4).

The policy is a T = 5 VP-DDPM ε-network: L_π = L_bc + η·L_q, with L_q the Q of the policy's own samples,
back-propagated through the whole 5-step sampler and divided by the other Q head's mean |Q|. The twin-Q
critic bootstraps from an EMA copy of the policy. Actions: softmax over the target critic's min Q of 50
policy samples. The DQL quirks of §12 (#12, #13, #15) are the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import Algorithm, BaseConfig, Stage, check_choice, check_positive, check_unit_interval
from offrl_zoo.diffusion import DQLNoiseNet, VPSchedule
from offrl_zoo.nets import (
    QEnsemble,
    describe_selection,
    frozen,
    frozen_copy,
    polyak_update_,
    seed_batch,
    select_candidates,
)
from offrl_zoo.nets.losses import td_target
from offrl_zoo.optim import step_optimizer
from offrl_zoo.spec import DataSpec

OFFICIAL_LR_STEP_EVERY = 50_000  # the official scheduler steps once per train() call: eval_freq 50 epochs × 1000


@dataclass
class DQLConfig(BaseConfig):
    steps: int = 2_000_000  # num_epochs × 1000 (2000 epochs on locomotion)
    batch_size: int = 256
    lr: float = 3e-4  # actor (per task)
    critic_lr: float = 3e-4  # fixed for every task in the official code
    # official: cosine with T_max = steps/1000 (epochs) stepped every 50 000 steps, i.e. ≈ no decay (quirk #13,
    # as the README's `--lr_decay` commands) | none | cosine: per step, to 0 over `steps` (both optimisers)
    lr_schedule: str = "official"
    q_weight: float = 1.0  # η
    # other_head: −mean Q_i(s, a_π) / sg(mean |Q_j(s, a_π)|), random head i (quirk #12) |
    # dataset: the paper's α = η / E_D|Q|: the same head's mean |Q| on the batch's dataset actions
    q_norm: str = "other_head"
    grad_norm: float = 1.0  # gn: clip of each optimiser's global grad L2 norm, ≤ 0 off (Diffusion_QL's default)
    max_q_backup: bool = False  # target = min over heads of the max over max_q_samples EMA-policy actions
    max_q_samples: int = 10
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critic
    ema_decay: float = 0.995  # EMA actor (used only for TD targets): θ̄ ← β·θ̄ + (1 − β)·θ
    ema_start: int = 1000  # before this step the EMA actor keeps its initial weights (quirk #15; 0 = from the start)
    ema_every: int = 5
    diffusion_steps: int = 5  # T of the VP schedule (b_min 0.1, b_max 10)
    hidden: int = 256  # ε-network: 3 × (Linear–Mish) of this width
    time_dim: int = 16  # sinusoidal step embedding width
    critic_hidden: int = 256  # each Q head: 3 × (Linear–Mish) of this width
    candidates: int = 50  # policy samples scored by the target critic per action
    selection: str = "softmax"  # softmax (official, temperature 1 on raw Q) | argmax | policy (one raw sample)
    top_k: int = 1  # reporting only: the official offline model-selection index (§4.7); unused in training

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(
            self,
            "steps",
            "batch_size",
            "lr",
            "critic_lr",
            "max_q_samples",
            "ema_every",
            "diffusion_steps",
            "hidden",
            "critic_hidden",
            "candidates",
        )
        check_unit_interval(self, "discount", "tau", "ema_decay")
        check_choice(self, "lr_schedule", ("official", "none", "cosine"))
        check_choice(self, "q_norm", ("other_head", "dataset"))
        check_choice(self, "selection", ("softmax", "argmax", "policy"))
        if self.ema_start < 0 or self.q_weight < 0:
            raise ValueError("ema_start and q_weight must be ≥ 0")


def normalised_q_loss(q: torch.Tensor, order: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """−mean_b Q_i / sg(mean_b |Q_j|) for (i, j) = order, q of shape (2, B); ``scale`` replaces the denominator."""
    # two slices, not q[order]: inductor's randperm-index rewrite fails on an unsliced permutation (torch 2.13)
    pick, other = q.index_select(0, order[:1])[0], q.index_select(0, order[1:])[0]
    return -pick.mean() / (other.abs().mean() if scale is None else scale).detach()


def backup_value(target_q: torch.Tensor, samples: int) -> torch.Tensor:
    """min over heads of (max over the ``samples`` next actions per state); target_q (2, B·samples) → (B,)."""
    return target_q.reshape(target_q.shape[0], -1, samples).max(-1).values.min(0).values


class DQL(Algorithm[DQLConfig]):
    name = "dql"
    Config = DQLConfig
    summary = "Diffusion-QL (Wang, Hunt, Zhou 2022; official code)"
    deterministic_act_is_exact = False  # softmax selection draws candidates even for evaluation
    acting_keys = ("selection", "candidates")
    unsupported_tasks = {
        "*-random-v2|hopper-expert-v2|halfcheetah-expert-v2|walker2d-expert-v2|*-full-replay-v2": (
            "the official main.py has no settings for it (its per-task gradient clip gn ranges over 1–9 on locomotion)",
            "grad_norm",
        ),
    }

    def __init__(self, spec: DataSpec, cfg: DQLConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(spec, cfg, device)
        s, a = spec.obs_dim, spec.action_dim
        self.clip = spec.max_action  # x̂0 and the final sample are clipped to ±a_max
        self.diffusion = VPSchedule(cfg.diffusion_steps)
        self.actor = DQLNoiseNet(a, s, cfg.hidden, cfg.time_dim)
        self.actor_ema = frozen_copy(self.actor)  # starts equal to the actor, no hard copy later (quirk #15)
        self.critic = QEnsemble(s, a, [cfg.critic_hidden] * 3, n=2, act="mish")
        self.critic_target = frozen_copy(self.critic)
        self.to(self.device)
        self.optimizers["actor"] = self.make_optimizer(self.actor.parameters(), lr=cfg.lr)
        self.optimizers["critic"] = self.make_optimizer(self.critic.parameters(), lr=cfg.critic_lr)
        if cfg.lr_schedule != "none":
            t_max = max(1, cfg.steps // 1000) if cfg.lr_schedule == "official" else cfg.steps
            for key, opt in self.optimizers.items():
                self.schedulers[key] = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max)

    def sample(self, net: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return self.diffusion.sample_posterior_mean(net, obs, self.spec.action_dim, self.clip)

    # -- stages -----------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """One training loop, split at ema_start because the EMA actor changes only from there on."""
        cfg = self.cfg
        split = min(cfg.ema_start, cfg.steps)
        modules = ("actor", "critic", "critic_target")
        schedules = self.step_schedules if self.schedulers else None
        stages = (
            [
                Stage(
                    "pre_ema",
                    split,
                    cfg.batch_size,
                    self.update,
                    modules=modules,
                    after_update=schedules,
                    variant=self.ema_due,
                )
            ]
            if split
            else []
        )
        if cfg.steps > split:
            stages.append(
                Stage(
                    "train",
                    cfg.steps - split,
                    cfg.batch_size,
                    lambda batch, step: self.update(batch, split + step),
                    modules=(*modules, "actor_ema"),
                    after_update=(lambda step: self.step_schedules(split + step)) if schedules else None,
                    variant=lambda step: self.ema_due(split + step),
                )
            )
        return stages

    def update(self, batch: TensorDict, step: int) -> TensorDict:
        """One official iteration at global step ``step``: critic → actor → EMA (if due) → Polyak (the schedulers
        follow in ``step_schedules``, the stages' ``after_update``)."""
        cfg = self.cfg
        out = self.critic_step(batch)
        out.update(self.actor_step(batch))
        if self.ema_due(step):
            polyak_update_(self.actor_ema, self.actor, 1 - cfg.ema_decay)
        polyak_update_(self.critic_target, self.critic, cfg.tau)
        return TensorDict(out)

    def ema_due(self, step: int) -> bool:
        """Whether the EMA actor moves at global step ``step`` (a step's code path, ``Stage.variant``)."""
        return step >= self.cfg.ema_start and step % self.cfg.ema_every == 0

    def step_schedules(self, step: int) -> None:
        """After global step ``step``: cosine steps every update, the official schedule once per train() call."""
        if self.cfg.lr_schedule == "cosine" or (step + 1) % OFFICIAL_LR_STEP_EVERY == 0:
            for scheduler in self.schedulers.values():
                scheduler.step()

    def critic_step(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        k = cfg.max_q_samples if cfg.max_q_backup else 1
        with torch.no_grad():  # the official code builds (and drops) a graph here; no number changes
            next_obs = batch["next", "observation"].repeat_interleave(k, dim=0)
            next_q = backup_value(self.critic_target(next_obs, self.sample(self.actor_ema, next_obs)), k)
            y = td_target(batch, next_q, cfg.discount)
        q = self.critic(batch["observation"], batch["action"])  # (2, B)
        loss = (q - y).pow(2).mean(1).sum()
        norm = step_optimizer(self.optimizers["critic"], loss, max_grad_norm=cfg.grad_norm)
        out = {"critic_loss": loss.detach(), "q_mean": q.detach().mean(), "target_q_mean": y.mean()}
        return out if norm is None else {**out, "critic_grad_norm": norm}

    def actor_step(self, batch: TensorDict) -> dict[str, torch.Tensor]:
        cfg, obs = self.cfg, batch["observation"]
        bc_loss = self.diffusion.eps_loss(self.actor, batch["action"], obs)
        with frozen(self.critic):  # gradients reach the action, not the critic (updated already this step)
            q = self.critic(obs, self.sample(self.actor, obs))
        order = seed_batch.randperm(2, device=obs.device)  # the random head, from torch's RNG (exact resume)
        scale = None
        if cfg.q_norm == "dataset":
            with torch.no_grad():
                scale = self.critic(obs, batch["action"]).index_select(0, order[:1]).abs().mean()
        q_loss = normalised_q_loss(q, order, scale)
        loss = bc_loss + cfg.q_weight * q_loss
        norm = step_optimizer(self.optimizers["actor"], loss, max_grad_norm=cfg.grad_norm)
        out = {"bc_loss": bc_loss.detach(), "q_loss": q_loss.detach(), "actor_loss": loss.detach()}
        return out if norm is None else {**out, "actor_grad_norm": norm}

    # -- acting -----------------------------------------------------------------------------------
    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """The online actor's samples (not the EMA), scored by the target critic's min Q (§4.6)."""
        if self.cfg.selection == "policy":
            return self.sample(self.actor, obs)
        b, k = obs.shape[0], self.cfg.candidates
        repeated = obs.repeat_interleave(k, dim=0)
        candidates = self.sample(self.actor, repeated)
        q = self.critic_target(repeated, candidates).min(0).values.reshape(b, k)
        return select_candidates(candidates, q, self.cfg.selection)

    def selection_rule(self, deterministic: bool) -> str:
        return describe_selection(self.cfg.selection, self.cfg.candidates, "diffusion")
