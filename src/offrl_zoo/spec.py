"""What an algorithm may know about its data: shapes, action bounds and observation statistics."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class DataSpec:
    """Shapes and bounds of a dataset, handed to every ``Algorithm`` constructor.

    ``obs_loc``/``obs_scale`` are the observation normalisation the data transforms applied to the
    dataset (zeros/ones when none); the algorithm applies the same map to raw observations in ``act``.
    """

    obs_dim: int
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    obs_loc: tuple[float, ...] | None = None
    obs_scale: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.action_low) != self.action_dim or len(self.action_high) != self.action_dim:
            raise ValueError(
                f"DataSpec: action bounds have {len(self.action_low)}/{len(self.action_high)} entries, "
                f"expected action_dim={self.action_dim}"
            )
        if any(lo >= hi for lo, hi in zip(self.action_low, self.action_high, strict=True)):
            raise ValueError(f"DataSpec: action_low {self.action_low} must be below action_high {self.action_high}")

    @property
    def max_action(self) -> float:
        """The symmetric bound a_max used by tanh policies (all D4RL tasks: 1.0)."""
        return float(max(max(abs(v) for v in self.action_low), max(abs(v) for v in self.action_high)))

    def action_bounds(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.tensor(self.action_low, dtype=torch.float32, device=device),
            torch.tensor(self.action_high, dtype=torch.float32, device=device),
        )

    def with_obs_stats(self, loc: torch.Tensor, scale: torch.Tensor) -> DataSpec:
        return replace(self, obs_loc=tuple(loc.tolist()), obs_scale=tuple(scale.tolist()))
