"""Timing an algorithm's stages on synthetic data of a task's shapes (speed benchmarks, and the
wall-time estimate ``compare`` prints before it starts)."""

from __future__ import annotations

import time

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import Stage, UpdateFn
from offrl_zoo.data.buffer import make_replay_buffer
from offrl_zoo.spec import DataSpec
from offrl_zoo.train.cost import sync


def synthetic_data(spec: DataSpec, n: int, device: torch.device | str = "cpu") -> TensorDict:
    """``n`` random transitions with the spec's widths (rare terminals), in the training layout."""
    g = torch.Generator().manual_seed(0)
    terminated = torch.rand(n, 1, generator=g) < 0.001
    low, high = spec.action_bounds()
    return TensorDict(
        {
            "observation": torch.randn(n, spec.obs_dim, generator=g),
            "action": low + torch.rand(n, spec.action_dim, generator=g) * (high - low),
            "next": {
                "observation": torch.randn(n, spec.obs_dim, generator=g),
                "reward": torch.randn(n, 1, generator=g),
                "done": terminated.clone(),
                "terminated": terminated,
                "truncated": torch.zeros(n, 1, dtype=torch.bool),
            },
        },
        batch_size=[n],
    ).to(device)


def seconds_per_update(
    stage: Stage, data: TensorDict, warmup: int, steps: int, device: torch.device, update: UpdateFn | None = None
) -> float:
    """Mean wall time of one ``update`` (default ``stage.update``; e.g. its compiled form), on batches
    sampled from a TorchRL buffer as in training."""
    update = update or stage.update
    rb = make_replay_buffer(data, stage.batch_size, stage.sampling, torch.Generator(device=device).manual_seed(0))
    for step in range(warmup):
        update(rb.sample(), step)
    sync(device)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        update(rb.sample(), step)
    sync(device)
    return (time.perf_counter() - start) / steps
