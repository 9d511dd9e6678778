"""``--vectorize-seeds``: several seeds of one algorithm on one task trained as one batched model.

Each seed keeps its own run directory, trainer, replay buffer, random streams, logs, evaluations and
checkpoints, exactly as if it ran alone; only the gradient updates are batched (``SeedBatch``), and on CUDA
the evaluations' ``act`` calls (one vmapped call per env step for all seeds' episodes). A run
directory written this way is an ordinary one: it resumes alone or in a batch, and reports read it
like any other (its provenance names the seed batch).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from offrl_zoo import registry
from offrl_zoo.config import resolve
from offrl_zoo.errors import FlagError, TrainingDiverged
from offrl_zoo.train.evaluator import evaluate_together
from offrl_zoo.train.loggers import LoggerSettings
from offrl_zoo.train.run import (
    RunRequest,
    check_device,
    check_finished,
    default_run_dirs,
    finish_run,
    load_request_data,
    prepare_trainer,
)
from offrl_zoo.train.run_dir import claim_runs, failures_marked, mark_failed
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


def train_seed_batch(
    requests: list[RunRequest],
    out: str | Path = "runs",
    progress: bool = True,
    stage_cache: str | Path | None = None,
    loggers: LoggerSettings | None = None,
    batched_eval: bool | None = None,
) -> list[Path]:
    """Train (or resume) the runs of ``requests``, which differ in their seed only, as one seed-batched
    model, reusing the finished ones (each checked as a lone run is); returns their run directories.

    ``batched_eval``: evaluate all seeds with one batched ``act`` per env step (default: on CUDA only; on a
    CPU the seeds' one-by-one evaluations were measured faster, see benchmarks/speed/README.md). Either way
    each seed's evaluation gives what it gives alone."""
    first = requests[0]
    others = [dataclasses.replace(r, seed=first.seed) for r in requests]
    if any(r != others[0] for r in others) or len({r.seed for r in requests}) != len(requests):
        raise FlagError("--vectorize-seeds: the runs must differ in their seed only, each seed once")
    algo_cls = registry.get(first.algorithm)
    task = first.resolve_task()
    resolved = resolve(algo_cls, task.id, first.preset, first.config_file, first.overrides)
    device = check_device(first.device)
    dirs = default_run_dirs(out, requests, task)
    with claim_runs(dirs) as claimed:
        streams = SeedStreams(device)
        trainers: list[Trainer] = []
        with failures_marked(claimed):
            dataset = load_request_data(first, task)  # once: the seeds differ in nothing else
            for request, run_dir in zip(requests, dirs, strict=True):
                if run_dir not in claimed:
                    check_finished(request, task, resolved, run_dir, dataset)
            todo = [(r, d) for r, d in zip(requests, dirs, strict=True) if d in claimed]
            if not todo:
                return dirs
            seeds = [r.seed for r, _ in todo]
            for request, run_dir in todo:
                trainers.append(
                    prepare_trainer(
                        request,
                        task,
                        resolved,
                        device,
                        run_dir,
                        progress and not trainers,
                        stage_cache,
                        seed_batch=seeds,
                        dataset=dataset,
                        loggers=loggers,  # each seed logs as its own run
                    )
                )
                trainers[-1].vectorized = True
                streams.add_current()
            driver = _Driver(trainers, streams, device.type == "cuda" if batched_eval is None else batched_eval)
            driver.train()
        for i, trainer in enumerate(trainers):
            if i in driver.failed:
                mark_failed(trainer.run_dir, driver.failed[i])
            else:
                finish_run(trainer, trainer.result())
    if driver.failed:  # the other seeds finished; the command fails as a lone run that diverged does
        i, err = next(iter(driver.failed.items()))
        raise TrainingDiverged(f"seed {trainers[i].settings.seed}: {err}") from err
    return dirs


class _Driver:
    """Steps the seeds' trainers in lockstep through one ``SeedBatch``. A seed that diverges is marked
    failed and leaves the batch; the others go on without it (as they would have alone)."""

    def __init__(self, trainers: list[Trainer], streams: SeedStreams, batched_eval: bool) -> None:
        self.trainers, self.streams, self.batched_eval = trainers, streams, batched_eval
        self.alive = list(range(len(trainers)))
        self.failed: dict[int, TrainingDiverged] = {}
        self.iterators = [t.stage_runs() for t in trainers]
        for trainer in trainers:
            # a cached shared stage is taken only when every seed has it, so the seeds stay in step
            trainer.may_reuse = lambda index: all(self.trainers[i].stage_is_cached(index) for i in self.alive)
        self._rebuild()

    def _rebuild(self) -> None:
        self.batch = SeedBatch(
            [self.trainers[i].algo for i in self.alive], [self.streams.generators[i] for i in self.alive]
        )
        for k, i in enumerate(self.alive):
            self.trainers[i].before_state_use = self._unstacker(k)

    def _unstacker(self, k: int) -> Callable[[], None]:
        """Writes the seed at position ``k`` of the (current) batch into its own algorithm."""

        def unstack() -> None:
            self.batch.unstack(k)

        return unstack

    def train(self) -> None:
        try:
            while self.alive:
                runs: list[StageRun | None] = []
                for i in self.alive:
                    with self.streams.use(i):
                        runs.append(next(self.iterators[i], None))
                started = [r for r in runs if r is not None]
                if not started:
                    return
                if len(started) < len(runs) or len({(r.index, r.first) for r in started}) != 1:
                    # seeds killed at different points: finish each alone (same results, not batched)
                    for i, run in zip(self.alive, runs, strict=True):
                        try:
                            _finish_alone(self.trainers[i], self.streams, i, run, self.iterators[i])
                        except TrainingDiverged as err:
                            self.failed[i] = err
                    return
                self._train_stage(started)
        finally:
            for it in self.iterators:
                it.close()

    def _train_stage(self, runs: list[StageRun]) -> None:
        self.batch.stack()
        self.batch.template.train()
        first, steps, index = runs[0].first, runs[0].steps, runs[0].index
        stage = self.batch.stages()[index]
        for step in range(first, steps):
            metrics = self.batch.update(stage, torch.stack([r.rb.sample() for r in runs]), step)
            diverged = []
            evaluations = _OnFirstRequest(self._evaluate_all)
            for k, (i, run) in enumerate(zip(self.alive, runs, strict=True)):
                trainer = self.trainers[i]
                if self.batched_eval:
                    trainer.evaluate_policy = functools.partial(evaluations.get, k)
                try:
                    with self.streams.use(i):
                        trainer.after_step(run, step, metrics[k])
                except TrainingDiverged as err:
                    diverged.append(k)
                    self.failed[i] = err
                finally:
                    trainer.evaluate_policy = None
            if diverged:
                self._drop(diverged, runs)
                if not self.alive:
                    return
                stage = self.batch.stages()[index]  # bound to the rebuilt batch's template

    def _evaluate_all(self) -> dict[int, dict]:
        """The evaluations of the batch's seeds with finite weights (by position), at once, one batched ``act``
        per env step; seed k draws from a generator seeded as its evaluation alone seeds the global one, so each
        result is what it gets alone. A seed with non-finite weights (about to be found diverged) is left out,
        to be evaluated alone: it would make sampling selections raise for every seed."""
        positions = [k for k, ok in enumerate(self.batch.finite()) if ok]
        evaluators = [self.trainers[self.alive[k]].evaluator for k in positions]
        if not evaluators:
            return {}
        assert all(e is not None for e in evaluators)  # asked for by a trainer that evaluates, so all do
        device = self.batch.template.obs_loc.device
        streams = [torch.Generator(device=device).manual_seed(e.seed) for e in evaluators]  # type: ignore[union-attr]
        deterministic = evaluators[0].deterministic  # type: ignore[union-attr]
        results = evaluate_together(
            evaluators,  # type: ignore[arg-type]  # checked above
            lambda obs: self.batch.act(obs, deterministic, streams, positions),
            streams,
        )
        return dict(zip(positions, results, strict=True))

    def _drop(self, positions: list[int], runs: list[StageRun]) -> None:
        keep = [k for k in range(len(self.alive)) if k not in positions]
        for k in keep:
            self.batch.unstack(k)
        for k in positions:
            self.iterators[self.alive[k]].close()
        self.alive = [self.alive[k] for k in keep]
        runs[:] = [runs[k] for k in keep]
        if self.alive:
            self._rebuild()
            self.batch.template.train()


def _finish_alone(trainer: Trainer, streams: SeedStreams, i: int, run: StageRun | None, rest: Iterator) -> None:
    trainer.before_state_use = lambda: None
    with streams.use(i):
        while run is not None:
            trainer.train_stage(run)
            run = next(rest, None)


class _OnFirstRequest:
    """The seeds' evaluations of one step, computed for all of them when the first seed asks; None for a seed
    left out of them (its trainer then evaluates it alone)."""

    def __init__(self, compute: Callable[[], dict[int, dict]]) -> None:
        self.compute = compute
        self.results: dict[int, dict] | None = None

    def get(self, k: int) -> dict | None:
        if self.results is None:
            self.results = self.compute()
        return self.results.get(k)
