"""Implicit Diffusion Q-Learning (Hansen-Estruch et al. 2023), as the official code (docs/reference.md §5).

An IQL critic (expectile V, twin Q) next to a pure behaviour-cloning diffusion model (discrete VP-DDPM,
T = 5, ResNet ε-network); the policy exists only at acting time: N behaviour samples from the EMA
score net, the one with the highest min target Q is taken. One stage, every step: score net → V (from
the target Q) → Q (from the just-updated V) → Polyak. Quirks #16 (5 % held out) and #17 (V's
LayerNorm only on its input) are the defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from tensordict import TensorDict
from torch import nn

from offrl_zoo.algorithm import Algorithm, BaseConfig, Stage, check_choice, check_positive, check_unit_interval
from offrl_zoo.diffusion import LearnableFourierEmbedding, ResNetNoiseNet, VPSchedule
from offrl_zoo.nets import EnsembleLinear, QEnsemble, frozen_copy, mlp, polyak_update_, select_candidates
from offrl_zoo.nets.losses import expectile_loss, td_target
from offrl_zoo.optim import step_optimizer
from offrl_zoo.spec import DataSpec

SELECTIONS = ("argmax", "resample")
ACTING_FIELDS = ("candidates", "selection", "clip_sampler", "temperature", "repeat_last")  # not used in training
VALUE_LAYER_NORMS = ("input", "hidden", "none")


@dataclass
class IDQLConfig(BaseConfig):
    clip_actions: float | None = 1 - 1e-5  # D4RLDataset(clip_to_eps=True)
    holdout_fraction: float = 0.05  # quirk #16: the launcher's ds.split(0.95); 0 trains on everything
    steps: int = 3_000_000  # the launcher runs 3 000 001
    batch_size: int = 512
    actor_lr: float = 3e-4  # score net: AdamW (optax adamw: weight decay on every parameter)
    weight_decay: float = 1e-4
    cosine_decay: bool = True  # score-net lr → 0 over `steps` (decay_steps = 3e6)
    critic_lr: float = 3e-4  # Q and V: Adam, constant
    value_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of the target Q
    ema_tau: float = 0.001  # EMA rate of the acting score net (actor_tau), every step
    expectile: float = 0.7  # critic_hyperparam: 0.9 on antmaze
    diffusion_steps: int = 5  # T, vp schedule
    score_hidden: int = 256
    score_blocks: int = 3
    dropout: float = 0.1  # in the score net's residual blocks, training only
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])  # Q heads and V, ReLU
    value_layer_norm: str = "input"  # quirk #17: input (once, on s) | hidden (after each Linear) | none
    candidates: int = 64  # N behaviour samples per action
    selection: str = "argmax"  # argmax of min target Q (official) | resample (∝ expectile weights of Q − V)
    clip_sampler: bool = True  # clip x to the action box after every denoising step
    temperature: float = 1.0  # κ, scale of the sampler's noise (ddpm_temperature)
    repeat_last: int = 0  # M extra t = 0 steps

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(
            self,
            "steps",
            "batch_size",
            "actor_lr",
            "critic_lr",
            "value_lr",
            "candidates",
            "diffusion_steps",
            "temperature",
        )
        check_unit_interval(self, "discount", "tau", "ema_tau", "expectile")
        check_choice(self, "selection", SELECTIONS)
        check_choice(self, "value_layer_norm", VALUE_LAYER_NORMS)
        if self.weight_decay < 0 or self.repeat_last < 0 or not 0 <= self.dropout < 1:
            raise ValueError("weight_decay and repeat_last must be ≥ 0 and dropout in [0, 1)")


@torch.no_grad()
def xavier_(module: nn.Module) -> nn.Module:
    """jaxrl5's ``default_init``: xavier-uniform kernels (each ensemble member on its own), zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | EnsembleLinear):
            for kernel in layer.weight.reshape(-1, *layer.weight.shape[-2:]):
                nn.init.xavier_uniform_(kernel)
            nn.init.zeros_(layer.bias)
    return module


def value_net(obs_dim: int, hidden: list[int], layer_norm: str) -> nn.Module:
    if layer_norm == "input":  # jaxrl5 MLP(use_layer_norm=True) normalises its input only (flax eps 1e−6)
        return nn.Sequential(nn.LayerNorm(obs_dim, eps=1e-6), mlp(obs_dim, hidden, 1))
    return mlp(obs_dim, hidden, 1, layer_norm=layer_norm == "hidden")


class IDQL(Algorithm[IDQLConfig]):
    name = "idql"
    Config = IDQLConfig
    summary = "Implicit Diffusion Q-Learning (Hansen-Estruch et al. 2023; official code)"
    deterministic_act_is_exact = False  # every action draws fresh diffusion samples
    acting_keys = ("selection", "candidates", "temperature", "clip_sampler", "repeat_last")

    def __init__(self, spec: DataSpec, cfg: IDQLConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(spec, cfg, device)
        s, a = spec.obs_dim, spec.action_dim
        self.a_max = spec.max_action  # the sampler's clip (1 on D4RL, as the official ±1)
        self.schedule = VPSchedule(cfg.diffusion_steps)
        self.score_net = ResNetNoiseNet(
            a,
            s,
            time_embedding=LearnableFourierEmbedding(),
            act=nn.SiLU,
            io_init=xavier_,  # the official input/output Dense layers; the rest keep PyTorch's default init
            hidden=cfg.score_hidden,
            blocks=cfg.score_blocks,
            dropout=cfg.dropout,
        )
        self.score_ema = frozen_copy(self.score_net)  # starts equal to the online net, as the official
        self.critic = xavier_(QEnsemble(s, a, cfg.critic_hidden, n=2, act="relu"))
        self.critic_target = frozen_copy(self.critic)
        self.value = xavier_(value_net(s, cfg.critic_hidden, cfg.value_layer_norm))
        self.to(self.device)
        self.optimizers["score_net"] = self.make_optimizer(
            self.score_net.parameters(), torch.optim.AdamW, lr=cfg.actor_lr, weight_decay=cfg.weight_decay
        )
        self.optimizers["value"] = self.make_optimizer(self.value.parameters(), lr=cfg.value_lr)
        self.optimizers["critic"] = self.make_optimizer(self.critic.parameters(), lr=cfg.critic_lr)
        if cfg.cosine_decay:
            self.schedulers["score_net"] = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizers["score_net"], T_max=cfg.steps
            )

    def stages(self) -> list[Stage]:
        # Shared: training does not depend on how actions are picked, so runs that differ only in the acting
        # settings reuse one trained stage (a reused stage gets its final evaluation, not the periodic ones).
        cfg = self.cfg
        shared = {"kind": "idql/1", **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in ACTING_FIELDS}}
        modules = ("score_net", "score_ema", "value", "critic", "critic_target")
        return [
            Stage(
                "train",
                cfg.steps,
                cfg.batch_size,
                self.update,
                modules=modules,
                shared=shared,
                after_update=self.scheduler_steps(),
            )
        ]

    def v(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value(obs)[:, 0]

    # -- losses (shared by training and validation) ------------------------------------------------
    def score_loss(self, batch: TensorDict) -> torch.Tensor:
        """mean_b Σ_j (ε_φ(x_t, s, t) − ε)², t ~ U{0..T−1}; dropout follows the module's mode."""
        return self.schedule.eps_loss(self.score_net, batch["action"], batch["observation"], "sum_mean")

    def value_loss(self, batch: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
        obs = batch["observation"]
        with torch.no_grad():
            q = self.critic_target(obs, batch["action"]).min(0).values
        v = self.v(obs)
        return expectile_loss(q - v, self.cfg.expectile), v

    def critic_loss(self, batch: TensorDict) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over heads and batch, i.e. ½(MSE_1 + MSE_2), with the current V(s')."""
        with torch.no_grad():
            next_v = self.v(batch["next", "observation"])
            y = td_target(batch, next_v, self.cfg.discount)
        q = self.critic(batch["observation"], batch["action"])  # (2, B)
        return (q - y).pow(2).mean(), q

    def update(self, batch: TensorDict, step: int) -> TensorDict:
        cfg = self.cfg
        score_loss = self.score_loss(batch)
        step_optimizer(self.optimizers["score_net"], score_loss)
        polyak_update_(self.score_ema, self.score_net, cfg.ema_tau)
        value_loss, v = self.value_loss(batch)
        step_optimizer(self.optimizers["value"], value_loss)
        critic_loss, q = self.critic_loss(batch)  # uses the V just updated
        step_optimizer(self.optimizers["critic"], critic_loss)
        polyak_update_(self.critic_target, self.critic, cfg.tau)
        return TensorDict(
            {
                "score_loss": score_loss.detach(),
                "value_loss": value_loss.detach(),
                "critic_loss": critic_loss.detach(),
                "q_mean": q.detach().mean(),
                "v_mean": v.detach().mean(),
            }
        )

    def validation_metrics(self, batch: TensorDict) -> TensorDict:
        return TensorDict(
            {
                "score_loss": self.score_loss(batch),
                "value_loss": self.value_loss(batch)[0],
                "critic_loss": self.critic_loss(batch)[0],
            }
        )

    # -- acting -------------------------------------------------------------------------------------
    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        cfg, b, n = self.cfg, obs.shape[0], self.cfg.candidates
        repeated = obs.repeat_interleave(n, dim=0)
        candidates = self.schedule.sample_ancestral(
            self.score_ema,
            repeated,
            self.spec.action_dim,
            clip=cfg.clip_sampler,
            temperature=cfg.temperature,
            repeat_last=cfg.repeat_last,
            bound=self.a_max,
        )
        q = self.critic_target(repeated, candidates).min(0).values.reshape(b, n)
        if cfg.selection == "argmax":
            return select_candidates(candidates, q, "argmax")
        weights = self.expectile_weights(q - self.v(obs).unsqueeze(1), cfg.expectile)
        return select_candidates(candidates, weights, "weights")

    @staticmethod
    def expectile_weights(adv: torch.Tensor, expectile: float) -> torch.Tensor:
        """Resampling weights of ``sample_implicit_policy``: τ where Q − V > 0, else 1 − τ (unnormalised)."""
        return torch.where(adv > 0, expectile, 1.0 - expectile)

    def selection_rule(self, deterministic: bool) -> str:
        n = self.cfg.candidates
        if self.cfg.selection == "argmax":
            return f"argmax of min target Q over {n} EMA-diffusion samples"
        return f"1 of {n} EMA-diffusion samples drawn ∝ τ if min target Q > V else 1 − τ"
