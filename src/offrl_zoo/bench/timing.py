"""Timing an algorithm's stages on synthetic data of a task's shapes (speed benchmarks, and the
wall-time estimate ``compare`` prints before it starts)."""

from __future__ import annotations

import time

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import Algorithm, Stage
from offrl_zoo.data.buffer import make_replay_buffer, training_step
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
    stage: Stage, data: TensorDict, warmup: int, steps: int, device: torch.device, algo: Algorithm | None = None
) -> float:
    """Mean wall time of one step of ``stage``. With ``algo``, the step the trainer runs (``compiled_update``:
    on the fast path compiled, captured on CUDA, and drawing its own batch where ``algo.batch_draw`` says so);
    without, the eager ``stage.update``. Batches come from a TorchRL buffer over ``data``, as in training,
    unless the update draws its own."""
    rb = make_replay_buffer(data, stage.batch_size, stage.sampling, torch.Generator(device=device).manual_seed(0))
    step_fn = (
        (lambda step: stage.update(rb.sample(), step))
        if algo is None
        else training_step(algo, stage, data, rb, 0, algo.batch_draw(stage))
    )
    for step in range(warmup):
        step_fn(step)
    sync(device)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        step_fn(step)
    sync(device)
    return (time.perf_counter() - start) / steps
