"""Batches for training, drawn one of two ways (config ``draw``, resolved by ``Algorithm.batch_draw``):

- ``buffer``: a TorchRL replay buffer over the dataset's TensorDict on the training device, sampled by the
  trainer before each update with the trainer's own generator;
- ``graph``: the update draws its own batch (``UniformDraw`` for uniform stages, ``ShuffledDraw`` for shuffled
  ones), so that on the fast path the draw is compiled and captured with the rest of the step: on CUDA no
  host-side sampler and no copy into the graph's inputs remain between two replays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDict
from torchrl.data import ReplayBuffer, TensorStorage
from torchrl.data.replay_buffers import RandomSampler, SamplerWithoutReplacement

from offrl_zoo.algorithm import derived_seed

if TYPE_CHECKING:
    from offrl_zoo.algorithm import Algorithm, Stage

# What an update that draws its own batch is given in place of one.
NO_BATCH = TensorDict()


def check_batch_size(data: TensorDict, batch_size: int) -> None:
    if batch_size > len(data):
        raise ValueError(f"batch_size={batch_size} is larger than the dataset ({len(data)} transitions)")


def make_replay_buffer(data: TensorDict, batch_size: int, sampling: str, generator: torch.Generator) -> ReplayBuffer:
    """``uniform``: i.i.d. with replacement (DTQL, DQL, IDQL, IQL, TD3+BC, BC).
    ``shuffled``: a random permutation walked in order and redrawn after each pass, dropping the
    incomplete last batch so every batch has the same (static) shape (SRPO's loader).
    ``generator`` drives the sampling so that a run's batches are reproducible and resumable.
    """
    check_batch_size(data, batch_size)
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


class UniformDraw:
    """Batches of ``batch_size`` rows drawn uniformly with replacement from ``data`` (already on the training
    device), called inside the update (``draw=graph``). The rows come from the device's default generator,
    the one the update's own noise comes from: ``torch.compile`` cannot take a ``torch.Generator`` argument,
    while the default CUDA generator is the one a CUDA graph advances at every replay. Its state is in every
    checkpoint (the trainer's RNG states), so resume stays exact, and the trainer reseeds it at each stage's
    start, so a stage's batches depend on (seed, stage) alone, as the buffer's do.
    """

    def __init__(self, data: TensorDict, batch_size: int) -> None:
        check_batch_size(data, batch_size)
        self.data = data
        self.rows = len(data)
        self.batch_size = batch_size
        self.device = data["action"].device

    def __call__(self) -> TensorDict:
        return self.data[torch.randint(self.rows, (self.batch_size,), device=self.device)]


class ShuffledDraw:
    """Batches walked in order through a random permutation of ``data``'s rows, redrawn after each pass and
    dropping the incomplete last batch (``sampling=shuffled``, as the buffer does), called inside the update
    (``draw=graph``). The graph reads the permutation and a device cursor and advances the cursor; the host
    redraws the permutation between steps (``before_step``), once per pass. Pass p's permutation comes from its
    own generator seeded with (``seed``, p), so the draw has no state of its own to checkpoint: a run resumed at
    any step rebuilds that step's permutation and cursor.
    """

    def __init__(self, data: TensorDict, batch_size: int, seed: int) -> None:
        check_batch_size(data, batch_size)
        self.data = data
        self.rows = len(data)
        self.batch_size = batch_size
        self.batches_per_pass = self.rows // batch_size
        self.seed = seed
        self.device = data["action"].device
        self.perm = torch.empty(self.rows, dtype=torch.int64, device=self.device)
        self.cursor = torch.zeros((), dtype=torch.int64, device=self.device)
        self.offsets = torch.arange(batch_size, device=self.device)
        self.next_step = -1  # the step the cursor stands at; any other step rebuilds the pass

    def before_step(self, step: int) -> None:
        """Host side, before the update of ``step``: a new permutation at a pass's start, or at a resumed step."""
        pass_index, position = divmod(step, self.batches_per_pass)
        if position == 0 or step != self.next_step:
            generator = torch.Generator(device=self.device).manual_seed(derived_seed(self.seed, "pass", pass_index))
            self.perm.copy_(torch.randperm(self.rows, generator=generator, device=self.device))
            self.cursor.fill_(position * self.batch_size)
        self.next_step = step + 1

    def __call__(self) -> TensorDict:
        rows = self.perm[self.cursor + self.offsets]
        self.cursor.add_(self.batch_size)
        return self.data[rows]


def training_step(
    algo: Algorithm, stage: Stage, data: TensorDict, rb: ReplayBuffer, seed: int, draw: str
) -> Callable[[int], TensorDict]:
    """Step ``step`` of ``stage`` as training runs it (the trainer, and the speed benchmarks): its batch drawn
    by ``rb`` (``draw="buffer"``) or by the update itself from ``data`` (``"graph"``: ``UniformDraw``, or
    ``ShuffledDraw`` seeded with ``seed``), then the update and its bookkeeping (``algo.compiled_update``)."""
    if draw == "buffer":
        update = algo.compiled_update(stage)
        return lambda step: update(rb.sample(), step)
    if stage.sampling == "uniform":
        drawing = algo.compiled_update(stage, draw=UniformDraw(data, stage.batch_size))
        return lambda step: drawing(NO_BATCH, step)
    shuffled = ShuffledDraw(data, stage.batch_size, seed)
    drawing = algo.compiled_update(stage, draw=shuffled)

    def step_shuffled(step: int) -> TensorDict:
        shuffled.before_step(step)
        return drawing(NO_BATCH, step)

    return step_shuffled
