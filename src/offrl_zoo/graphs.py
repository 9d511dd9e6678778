"""Whole-step graphs of the fast path: each stage update compiled once per step variant, and on CUDA
captured as a CUDA graph and replayed.

**Step variants.** Some updates branch on their step: DQL's EMA every 5 steps, TD3+BC's delayed actor,
DTQL-KL's initialisation at its first step. A compiled graph or a CUDA graph freezes Python control
flow, so a ``Stage`` names those branches with ``variant(step) -> key``, and ``update`` may read its step
only through that key. ``VariantGraphs`` builds one graph per key, at the first step with that key, and
runs every later step with that key through it. The conformance check ``check_step_variants`` replays
each key's first step in place of the others and compares with the eager run, so an update that reads
its step in any other way fails there, on the CPU, not silently on a GPU.

**Capture (CUDA, ``fast=true`` with ``capture=true``).** ``CapturedStep`` runs the compiled update for
``CAPTURE_WARMUP`` real training steps on a side stream (compilation, autotuning and lazy allocations
happen there), then captures the next call into one ``torch.cuda.CUDAGraph`` and replays it from then on:
the step's inputs (the batch, or nothing where the step draws its own, ``draw=graph``) are copied into the
graph's static input buffers and the metrics are cloned out of its static outputs. Forward, backward,
every optimiser step (tensor-op Adam, learning rates as device tensors that the schedulers fill outside the
graph), the target/EMA updates and, with ``draw=graph``, the batch draw are in the graph; random
numbers come from the default CUDA generator, which advances at every replay, so a checkpoint of its
state keeps resume exact. A replay runs no Python: anything the update reads from Python (a config value,
an attribute, a CPU scalar) is frozen at capture, as the step is; learning rates are device tensors for
that reason, and a changed config needs a fresh ``compiled_update``.

**Seed batches** (``SeedBatch``, ``--vectorize-seeds``) run their vmapped update through ``VariantGraphs``
uncompiled (Dynamo does not trace the hooks that leave the vmap level; a capture needs no tracing) and pass
the seeds' generators, which ``CapturedStep`` registers with each graph so that a replay advances them.

Hand-made capture rather than ``tensordict.nn.CudaGraphModule``: the H200 probe measured the library's
wrapper 2–7 % slower (it synchronises the device before every replay), and the wrapper unregisters
TensorDict from PyTree for the whole process.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence

import torch
from tensordict import TensorDict

# Real steps run (on a side stream) before a capture: the first compiles; cuBLAS and the caching allocator
# set up their workspaces during the next ones.
CAPTURE_WARMUP = 3
# Code paths of one update; each holds a graph (and on CUDA its own memory pool).
MAX_VARIANTS = 8

BatchFn = Callable[[TensorDict], TensorDict]
StepFn = Callable[[TensorDict, int], TensorDict]


class CapturedStep:
    """``fn`` (a function of one TensorDict, returning one) captured as a CUDA graph after ``warmup`` calls."""

    def __init__(self, fn: BatchFn, warmup: int = CAPTURE_WARMUP, generators: Sequence[torch.Generator] = ()) -> None:
        self.fn = fn
        self.warmup = warmup
        self.generators = generators  # drawn from inside ``fn`` besides the default CUDA generator
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_in: TensorDict | None = None
        self.static_out: TensorDict | None = None
        self.failed = False
        self.side: torch.cuda.Stream | None = None

    def __call__(self, td: TensorDict) -> TensorDict:
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            self.side = self.side or torch.cuda.Stream()
            side = self.side
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.fn(td)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.failed:
            return self.fn(td)
        if self.graph is None:
            self.static_in = td.clone()  # this step's inputs, at the addresses the graph will read
            graph = torch.cuda.CUDAGraph()
            for generator in self.generators:  # a replay advances each registered stream as a real call would
                graph.register_generator_state(generator)
            try:
                with torch.cuda.graph(graph):  # recorded, not run: the replay below takes this step
                    self.static_out = self.fn(self.static_in)
            except RuntimeError as err:  # nothing ran while recording: take this step uncaptured, and the rest
                self.failed = True
                warnings.warn(
                    f"CUDA-graph capture failed, running compiled without capture from here on "
                    f"({type(err).__name__}: {str(err).splitlines()[0][:300]}); capture=false avoids the attempt "
                    "(with draw=auto it also returns the batch draw to the buffer)",
                    stacklevel=2,
                )
                return self.fn(td)
            self.graph = graph
        else:
            assert self.static_in is not None
            keys, captured = set(td.keys(True, True)), set(self.static_in.keys(True, True))
            if keys != captured:  # update_ would skip what differs and replay on stale inputs
                raise KeyError(
                    f"captured step: inputs {sorted(map(str, keys))}, captured with {sorted(map(str, captured))}"
                )
            self.static_in.update_(td, non_blocking=True)
        self.graph.replay()
        assert self.static_out is not None
        return self.static_out.clone()  # the next replay overwrites the static outputs


class VariantGraphs:
    """``update(batch, step)`` run as one graph per ``variant(step)`` key (module docstring): ``update`` (compiled
    on the fast path) is called with that key's first step in place of the step, and with ``capture`` each
    key's call is captured as a CUDA graph (``CapturedStep``). Compiling ``update`` itself, rather than one
    closure per key, keeps Dynamo's cache per update method, as the eager-step fast path had it.
    """

    def __init__(
        self,
        update: StepFn,
        variant: Callable[[int], Hashable] | None,
        capture: bool = False,
        generators: Sequence[torch.Generator] = (),
    ) -> None:
        self.update = update
        self.variant = variant
        self.capture = capture
        self.generators = generators
        self.graphs: dict[Hashable, BatchFn] = {}

    def __call__(self, batch: TensorDict, step: int) -> TensorDict:
        key = None if self.variant is None else self.variant(step)
        graph = self.graphs.get(key)
        if graph is None:
            if len(self.graphs) == MAX_VARIANTS:
                raise ValueError(
                    f"Stage.variant gave a {MAX_VARIANTS + 1}th key ({key!r} at step {step}): a variant names the "
                    "few code paths of an update (e.g. whether an EMA is due), not the step itself"
                )
            graph = _bind_step(self.update, step)
            if self.capture:
                graph = CapturedStep(graph, generators=self.generators)
            self.graphs[key] = graph
        return graph(batch)


def _bind_step(update: StepFn, step: int) -> BatchFn:
    def with_step(batch: TensorDict) -> TensorDict:
        return update(batch, step)

    return with_step
