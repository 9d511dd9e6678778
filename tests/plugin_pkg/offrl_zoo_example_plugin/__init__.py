"""A third-party algorithm for offrl-zoo, registered through the ``offrl_zoo.algorithms`` entry point.

MLBC fits a Gaussian policy to the dataset actions by maximum likelihood (behaviour cloning with a
learned, state-independent std) and acts with the mean. It is built only from offrl-zoo's public
pieces, like any plugin would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tensordict import TensorDict

from offrl_zoo import Algorithm, BaseConfig, DataSpec, Stage
from offrl_zoo.algorithm import check_positive
from offrl_zoo.nets import GaussianPolicy
from offrl_zoo.optim import step_optimizer


@dataclass
class MLBCConfig(BaseConfig):
    normalize_obs: bool = True  # standardise states with dataset statistics
    steps: int = 100_000  # gradient steps
    batch_size: int = 256
    lr: float = 1e-3  # Adam
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # ReLU MLP of the policy mean

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "steps", "batch_size", "lr")


class MLBC(Algorithm[MLBCConfig]):
    name = "mlbc"
    Config = MLBCConfig
    summary = "example plugin: maximum-likelihood Gaussian behaviour cloning"

    def __init__(self, spec: DataSpec, cfg: MLBCConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(spec, cfg, device)
        self.policy = GaussianPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, init="torch")
        self.to(self.device)
        self.optimizers["policy"] = self.make_optimizer(self.policy.parameters(), lr=cfg.lr)

    def stages(self) -> list[Stage]:
        return [Stage("train", self.cfg.steps, self.cfg.batch_size, self.update, modules=("policy",))]

    def update(self, batch: TensorDict, step: int) -> TensorDict:
        loss = -self.policy.log_prob(batch["observation"], batch["action"]).mean()
        step_optimizer(self.optimizers["policy"], loss)
        return TensorDict({"nll": loss.detach()})

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.policy(obs, deterministic=deterministic)
