"""Behaviour cloning as CORL's ``any_percent_bc`` (docs/reference.md §9)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import Algorithm, BaseConfig, Stage, check_positive
from offrl_zoo.nets import DeterministicActor
from offrl_zoo.optim import step_optimizer
from offrl_zoo.spec import DataSpec


@dataclass
class BCConfig(BaseConfig):
    normalize_obs: bool = True  # CORL normalises states (mean/std, eps 1e-3)
    steps: int = 1_000_000  # gradient steps
    batch_size: int = 256
    lr: float = 3e-4  # Adam
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # ReLU MLP, tanh output × a_max

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "steps", "batch_size", "lr")


class BC(Algorithm[BCConfig]):
    name = "bc"
    Config = BCConfig
    summary = "behaviour cloning (CORL any_percent_bc; top_fraction=0.1 gives 10%BC)"
    samples_actions = False  # a deterministic actor

    def __init__(self, spec: DataSpec, cfg: BCConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(spec, cfg, device)
        self.actor = DeterministicActor(spec.obs_dim, spec.action_dim, cfg.hidden, spec.max_action)
        self.to(self.device)
        self.optimizers["actor"] = self.make_optimizer(self.actor.parameters(), lr=cfg.lr)

    def stages(self) -> list[Stage]:
        return [Stage("train", self.cfg.steps, self.cfg.batch_size, self.update, modules=("actor",))]

    def update(self, batch: TensorDict, step: int) -> TensorDict:
        loss = (self.actor(batch["observation"]) - batch["action"]).pow(2).mean()
        step_optimizer(self.optimizers["actor"], loss)
        return TensorDict({"actor_loss": loss.detach()})

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(obs)
