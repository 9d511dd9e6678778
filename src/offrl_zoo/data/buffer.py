"""Batches for training: a TorchRL replay buffer over the dataset's TensorDict, on the training device."""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torchrl.data import ReplayBuffer, TensorStorage
from torchrl.data.replay_buffers import RandomSampler, SamplerWithoutReplacement


def make_replay_buffer(data: TensorDict, batch_size: int, sampling: str, generator: torch.Generator) -> ReplayBuffer:
    """``uniform``: i.i.d. with replacement (DTQL, DQL, IDQL, IQL, TD3+BC, BC).
    ``shuffled``: a random permutation walked in order and redrawn after each pass, dropping the
    incomplete last batch so every batch has the same (static) shape (SRPO's loader).
    ``generator`` drives the sampling so that a run's batches are reproducible and resumable.
    """
    if batch_size > len(data):
        raise ValueError(f"batch_size={batch_size} is larger than the dataset ({len(data)} transitions)")
    if sampling == "uniform":
        sampler = RandomSampler()
    elif sampling == "shuffled":
        sampler = SamplerWithoutReplacement(drop_last=True, shuffle=True)
    else:
        raise ValueError(f"sampling={sampling!r}: expected 'uniform' or 'shuffled'")
    device = data.device if data.device is not None else data["action"].device
    return ReplayBuffer(
        storage=TensorStorage(data, device=device), sampler=sampler, batch_size=batch_size, generator=generator
    )
