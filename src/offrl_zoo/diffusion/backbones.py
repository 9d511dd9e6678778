"""The ε / score networks of each method (docs/reference.md §2.2, §4.1, §5.1, §6.2).

Every backbone has the call signature ``net(x, obs, t)`` with x (B, A), obs (B, S) and t (B,) or a
scalar broadcast over the batch, and returns (B, A).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from offrl_zoo.diffusion.embeddings import SinusoidalEmbedding
from offrl_zoo.nets import seed_batch
from offrl_zoo.nets.activations import Mish


def _per_row(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):  # a fill on x's device, not a host→device copy (CUDA graphs refuse those)
        return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
    t = t.to(dtype=x.dtype)
    return t.expand(x.shape[0]) if t.ndim == 0 or t.numel() == 1 else t.reshape(-1)


class EDMScoreNet(nn.Module):
    """DTQL's ``ScoreNetwork`` F_φ: input concat(x, s, emb(u)); no activation after the first Linear.

    ``hidden_layers`` counts like the official code: the first Linear, then hidden_layers − 1 blocks of
    Linear + Mish, then the output Linear. With the first Linear un-activated, the first two affine maps
    compose into one (quirk #1 in docs/reference.md §12, kept so that parameter count and init match).
    """

    def __init__(self, action_dim: int, obs_dim: int, hidden: int = 256, time_dim: int = 16, hidden_layers: int = 4):
        super().__init__()
        self.embed = SinusoidalEmbedding(time_dim)
        layers: list[nn.Module] = [seed_batch.Linear(action_dim + obs_dim + time_dim, hidden)]
        for _ in range(hidden_layers - 1):
            layers += [seed_batch.Linear(hidden, hidden), Mish()]
        layers.append(seed_batch.Linear(hidden, action_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, obs: torch.Tensor, u: torch.Tensor | float) -> torch.Tensor:
        return self.net(torch.cat([x, obs, self.embed(_per_row(u, x))], dim=-1))


class DQLNoiseNet(nn.Module):
    """DQL's ε_θ(x, t, s): concat(x, emb(t), s) → 3 × (Linear(256)–Mish) → Linear(A); t the integer step."""

    def __init__(self, action_dim: int, obs_dim: int, hidden: int = 256, time_dim: int = 16):
        super().__init__()
        self.embed = SinusoidalEmbedding(time_dim)
        self.net = nn.Sequential(
            seed_batch.Linear(action_dim + time_dim + obs_dim, hidden),
            Mish(),
            seed_batch.Linear(hidden, hidden),
            Mish(),
            seed_batch.Linear(hidden, hidden),
            Mish(),
            seed_batch.Linear(hidden, action_dim),
        )

    def forward(self, x: torch.Tensor, obs: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.net(torch.cat([x, self.embed(_per_row(t, x)), obs], dim=-1))


class ResidualBlock(nn.Module):
    """h + Dense(h)(act(Dense(4h)(LayerNorm(Dropout(h))))) (IDQL/SRPO ``MLPResNetBlock``)."""

    def __init__(self, hidden: int, act: type[nn.Module], dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            seed_batch.Dropout(dropout),
            nn.LayerNorm(hidden),
            seed_batch.Linear(hidden, 4 * hidden),
            act(),
            seed_batch.Linear(4 * hidden, hidden),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.body(h)


class TimeEmbedding(Protocol):
    """A module mapping t (B,) to features (B, out_dim), such as those in ``embeddings``."""

    out_dim: int

    def __call__(self, t: torch.Tensor) -> torch.Tensor: ...


class ResNetNoiseNet(nn.Module):
    """ε_φ(x, s, t): concat(x, s, time_embedding(t)) → Dense(hidden) → blocks → act → Dense(A).

    ``io_init`` (e.g. a xavier initialiser) re-initialises the input and output Dense layers, in that
    order, after every layer has its PyTorch default init; None keeps the default init.
    Dropout is active in train mode only; call ``.eval()`` for sampling.
    """

    def __init__(
        self,
        action_dim: int,
        obs_dim: int,
        time_embedding: TimeEmbedding,
        act: type[nn.Module],
        io_init: Callable[[nn.Module], object] | None = None,
        hidden: int = 256,
        blocks: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not isinstance(time_embedding, nn.Module):
            raise TypeError(f"ResNetNoiseNet time_embedding {time_embedding!r}: expected an nn.Module")
        self.embed = time_embedding  # registered first: its parameters lead (optimiser order, checkpoint keys)
        self.inp = seed_batch.Linear(action_dim + obs_dim + time_embedding.out_dim, hidden)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden, act, dropout) for _ in range(blocks)))
        self.out = nn.Sequential(act(), seed_batch.Linear(hidden, action_dim))
        if io_init is not None:
            io_init(self.inp)
            io_init(self.out[1])

    def forward(self, x: torch.Tensor, obs: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        return self.out(self.blocks(self.inp(torch.cat([x, obs, self.embed(_per_row(t, x))], dim=-1))))
