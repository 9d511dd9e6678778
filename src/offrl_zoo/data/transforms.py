"""Dataset preparation shared by every algorithm (docs/reference.md §1.1–1.2), applied once before training.

Reward transforms, action clipping, observation normalisation and the held-out split live here and
only here; an algorithm selects them through the ``BaseConfig`` fields and never re-implements them.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import BaseConfig, derived_seed
from offrl_zoo.data.dataset import Dataset, DatasetError


def episode_ends(data: TensorDict, split: str, max_episode_steps: int = 1000) -> torch.Tensor:
    """Boolean (N,) marking the last transition of each episode, by the given splitting rule.

    ``gap`` (IQL/IDQL): a terminal, or next_obs[i] differs from obs[i+1] by more than 1e−6.
    ``fixed_1000`` (SRPO/CORL): a terminal, or the episode has reached ``max_episode_steps`` steps.
    The last transition always ends an episode for ``gap``; ``fixed_1000`` leaves a trailing partial
    episode out of the returns, as CORL does.
    """
    terminal = data["next", "terminated"].reshape(-1)
    n = terminal.numel()
    if split == "gap":
        gap = (data["observation"][1:] - data["next", "observation"][:-1]).norm(dim=-1) > 1e-6
        ends = terminal.clone()
        ends[:-1] |= gap
        ends[-1] = True
        return ends
    ends = torch.zeros(n, dtype=torch.bool)
    length = 0
    for i, term in enumerate(terminal.tolist()):
        length += 1
        if term or length == max_episode_steps:
            ends[i] = True
            length = 0
    return ends


def episode_returns(rewards: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Undiscounted return of each complete episode (an episode closes at each True of ``ends``)."""
    ids = torch.cumsum(ends.long(), 0) - ends.long()  # episode index of each transition
    sums = torch.zeros(int(ids.max()) + 1, dtype=torch.float64).index_add_(0, ids, rewards.double())
    return sums[: int(ends.sum())]


def keep_top_trajectories(data: TensorDict, fraction: float, discount: float) -> TensorDict:
    """The best ``fraction`` of trajectories by discounted return (at least one), in ranked order.

    Trajectories end at a terminal or after 1000 steps and a trailing partial one is dropped (CORL).
    """
    ends = episode_ends(data, "fixed_1000")
    ids = torch.cumsum(ends.long(), 0) - ends.long()
    starts = torch.cat([torch.zeros(1, dtype=torch.long), torch.nonzero(ends).reshape(-1) + 1])
    position = torch.arange(len(ids)) - starts[ids]
    weighted = data["next", "reward"].reshape(-1).double() * discount ** position.double()
    n_complete = int(ends.sum())
    returns = torch.zeros(n_complete + 1, dtype=torch.float64).index_add_(0, ids, weighted)[:n_complete]
    order = torch.argsort(returns, descending=True, stable=True)[: max(1, int(fraction * n_complete))]
    rank = torch.full((n_complete + 1,), -1, dtype=torch.long)
    rank[order] = torch.arange(len(order))
    row_rank = rank[ids]
    kept = torch.nonzero(row_rank >= 0).reshape(-1)
    rows = kept[torch.argsort(row_rank[kept], stable=True)]
    return data[rows]


def transform_rewards(data: TensorDict, cfg: BaseConfig, origin: str) -> dict:
    """Apply ``cfg.reward_transform`` to ``data['next', 'reward']`` in place; returns what was done."""
    reward = data["next", "reward"]
    kind = cfg.reward_transform
    if kind == "raw":
        return {"reward_transform": "raw"}
    if kind == "minus_one":
        reward.sub_(1.0)
        return {"reward_transform": "r - 1"}
    if kind == "dql_antmaze":
        reward.sub_(0.5).mul_(4.0)
        return {"reward_transform": "(r - 0.5) * 4"}
    if kind == "standardize":
        mean, std = reward.mean().item(), reward.std().item()
        reward.sub_(mean).div_(std)
        return {"reward_transform": "(r - mean) / std", "mean": mean, "std": std}
    returns = episode_returns(reward.reshape(-1), episode_ends(data, cfg.episode_split))
    if len(returns) < 2 or returns.max() == returns.min():
        raise DatasetError(
            f"{origin}: reward_transform=return_range needs at least 2 complete episodes with different returns "
            f"(found {len(returns)} with episode_split={cfg.episode_split})"
        )
    spread = float(returns.max() - returns.min())
    reward.mul_(cfg.return_range_scale / spread)
    return {
        "reward_transform": f"r * {cfg.return_range_scale} / (R_max - R_min)",
        "R_max": float(returns.max()),
        "R_min": float(returns.min()),
        "episode_split": cfg.episode_split,
    }


def holdout_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, held-out) row indices: a permutation drawn from ``seed`` alone, the first
    ``int(n·(1 − fraction))`` rows for training (the count of IDQL's ``Dataset.split(0.95)``)."""
    generator = torch.Generator().manual_seed(derived_seed(seed, "holdout"))
    order = torch.randperm(n, generator=generator)
    n_train = int(n * (1 - fraction))
    return order[:n_train].sort().values, order[n_train:].sort().values


def prepare(dataset: Dataset, cfg: BaseConfig, seed: int = 0) -> tuple[Dataset, dict]:
    """A transformed copy of ``dataset`` for an algorithm config, and a record of the transforms.

    The held-out split comes last, as in IDQL (its reward scale is computed on all the data); it
    depends on ``seed`` only, so the same run seed always holds out the same transitions.
    """
    data = dataset.data.clone()
    origin = dataset.provenance.dataset_id
    record: dict = {}
    if cfg.clip_actions is not None:
        data["action"].clamp_(-cfg.clip_actions, cfg.clip_actions)
        record["clip_actions"] = cfg.clip_actions
    if cfg.top_fraction < 1.0:
        before = len(data)
        data = keep_top_trajectories(data, cfg.top_fraction, cfg.top_fraction_discount)
        record["top_fraction"] = {"fraction": cfg.top_fraction, "transitions": [before, len(data)]}
    record.update(transform_rewards(data, cfg, origin))
    spec = dataset.spec
    if cfg.normalize_obs:
        loc = data["observation"].mean(0)
        scale = data["observation"].std(0, unbiased=False) + cfg.obs_norm_eps
        data["observation"] = (data["observation"] - loc) / scale
        data["next", "observation"] = (data["next", "observation"] - loc) / scale
        spec = spec.with_obs_stats(loc, scale)
        record["normalize_obs"] = {"eps": cfg.obs_norm_eps}
    holdout = None
    if cfg.holdout_fraction > 0:
        train_rows, held_rows = holdout_split(len(data), cfg.holdout_fraction, seed)
        if len(train_rows) == 0:
            raise DatasetError(f"{origin}: holdout_fraction={cfg.holdout_fraction} leaves no training transitions")
        data, holdout = data[train_rows], (data[held_rows] if len(held_rows) else None)
        record["holdout"] = {
            "fraction": cfg.holdout_fraction,
            "seed": seed,
            "transitions": [len(train_rows), len(held_rows)],
        }
    return replace(dataset, data=data, spec=spec, holdout=holdout), record
