"""``--vectorize-seeds``: several seeds of one algorithm on one task trained as one batched model.

Each seed keeps its own run directory, trainer, replay buffer, random streams, logs, evaluations and
checkpoints, exactly as if it ran alone; only the gradient updates are batched (``SeedBatch``). A run
directory written this way is an ordinary one: it resumes alone or in a batch, and reports read it
like any other (its provenance names the seed batch).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from offrl_zoo import registry
from offrl_zoo.config import ConfigError, resolve
from offrl_zoo.errors import TrainingDiverged
from offrl_zoo.train.io import write_json
from offrl_zoo.train.run import (
    DONE,
    FAILED,
    RunRequest,
    check_device,
    default_run_dir,
    finish_run,
    prepare_trainer,
    run_lock,
)
from offrl_zoo.train.seed_batch_model import SeedBatch
from offrl_zoo.train.trainer import StageRun, Trainer, rng_state, set_rng_state


class SeedStreams:
    """Each seed's global RNG state (torch, NumPy, Python), swapped in while that seed's trainer works.

    The torch stream of the training device lives in ``generators[i]``, which ``SeedBatch`` draws from
    inside the batched update; ``use(i)`` moves it into the global generator and back.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.states: list[dict] = []
        self.generators: list[torch.Generator] = []

    def add_current(self) -> None:
        """Take the current global state as the next seed's."""
        self.states.append(rng_state(self.device))
        generator = torch.Generator(self.device)
        generator.set_state(self.states[-1]["cuda" if self.device.type == "cuda" else "torch"])
        self.generators.append(generator)

    @contextmanager
    def use(self, i: int) -> Iterator[None]:
        key = "cuda" if self.device.type == "cuda" else "torch"
        self.states[i][key] = self.generators[i].get_state()
        set_rng_state(self.states[i], self.device)
        try:
            yield
        finally:
            self.states[i] = rng_state(self.device)
            self.generators[i].set_state(self.states[i][key])


def train_seed_batch(requests: list[RunRequest], out: str | Path = "runs", progress: bool = True,
                     stage_cache: str | Path | None = None) -> list[Path]:
    """Train (or resume, or skip if finished) the runs of ``requests``, which differ in their seed only,
    as one seed-batched model; returns their run directories."""
    first = requests[0]
    others = [dataclasses.replace(r, seed=first.seed) for r in requests]
    if any(r != others[0] for r in others) or len({r.seed for r in requests}) != len(requests):
        raise ConfigError("--vectorize-seeds: the runs must differ in their seed only, each seed once")
    algo_cls = registry.get(first.algorithm)
    task = first.resolve_task()
    resolved = resolve(algo_cls, task.id, first.preset, first.config_file, first.overrides)
    device = check_device(first.device)
    dirs = [default_run_dir(out, r, task) for r in requests]
    todo = [(r, d) for r, d in zip(requests, dirs, strict=True) if not (d / DONE).is_file()]
    if not todo:
        return dirs
    with ExitStack() as locks:
        for _, run_dir in todo:
            locks.enter_context(run_lock(run_dir))
        todo = [(r, d) for r, d in todo if not (d / DONE).is_file()]  # finished meanwhile by another process
        streams = SeedStreams(device)
        trainers = []
        seeds = [r.seed for r, _ in todo]
        for request, run_dir in todo:
            trainers.append(prepare_trainer(request, task, resolved, device, run_dir, progress and not trainers,
                                            stage_cache, seed_batch=seeds))
            streams.add_current()
        try:
            results = _train(trainers, streams)
        except Exception as err:
            kind = "diverged" if isinstance(err, TrainingDiverged) else "error"
            for trainer in trainers:
                with contextlib.suppress(OSError):
                    write_json(trainer.run_dir / FAILED, {"kind": kind, "error": f"{type(err).__name__}: {err}"})
            raise
        for trainer, result in zip(trainers, results, strict=True):
            finish_run(trainer, result)
    return dirs


def _train(trainers: list[Trainer], streams: SeedStreams) -> list[dict]:
    batch = SeedBatch([t.algo for t in trainers], streams.generators)
    for i, trainer in enumerate(trainers):
        trainer.before_state_use = lambda i=i: batch.unstack(i)
        # a cached shared stage is taken only when every seed has it, so the seeds stay in step
        trainer.may_reuse = lambda index: all(t.stage_is_cached(index) for t in trainers)
    stage_runs = [t.stage_runs() for t in trainers]
    with contextlib.ExitStack() as closing:
        for it in stage_runs:
            closing.callback(it.close)
        while True:
            runs: list[StageRun | None] = []
            for i, it in enumerate(stage_runs):
                with streams.use(i):
                    runs.append(next(it, None))
            if all(r is None for r in runs):
                break
            if len({(r.index, r.first) if r else None for r in runs}) != 1:
                # seeds killed at different points: finish each alone (same results, not batched)
                for i, (run, it) in enumerate(zip(runs, stage_runs, strict=True)):
                    _finish_alone(trainers[i], streams, i, run, it)
                break
            _train_stage(batch, trainers, streams, runs)
    return [t.result() for t in trainers]


def _train_stage(batch: SeedBatch, trainers: list[Trainer], streams: SeedStreams, runs: list[StageRun]) -> None:
    batch.stack()
    batch.template.train()
    stage = batch.stages()[runs[0].index]
    for step in range(runs[0].first, runs[0].steps):
        metrics = batch.update(stage, torch.stack([r.rb.sample() for r in runs]), step)
        for i, (trainer, run) in enumerate(zip(trainers, runs, strict=True)):
            with streams.use(i):
                trainer.after_step(run, step, metrics[i])


def _finish_alone(trainer: Trainer, streams: SeedStreams, i: int, run: StageRun | None, rest: Iterator) -> None:
    trainer.before_state_use = lambda: None
    with streams.use(i):
        while run is not None:
            update = trainer.algo.compiled_update(run.stage)
            for step in range(run.first, run.steps):
                trainer.after_step(run, step, update(run.rb.sample(), step))
            run = next(rest, None)
