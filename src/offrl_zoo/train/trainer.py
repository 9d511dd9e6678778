"""The one training loop: runs an algorithm's stages on a prepared dataset, logs, evaluates, checkpoints.

Run directory layout (docs/guide.md, "Runs"): ``config.yaml``, ``provenance.json``, ``metrics.jsonl``,
``eval.jsonl``, ``checkpoint.pt`` and a ``done`` marker written last. A killed run restarted on the
same directory resumes from its checkpoint and produces the same losses as an uninterrupted run: the
checkpoint holds the algorithm's ``training_state()`` (networks, optimisers, schedulers), the global and
sampler RNG states, the sampler's position, and the lengths of the log files (``offrl_zoo.io.Checkpoint``),
which are cut back to them on resume.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import ReplayBuffer
from tqdm.auto import tqdm

from offrl_zoo.algorithm import Algorithm, Stage, derived_seed
from offrl_zoo.data.buffer import make_replay_buffer, training_step
from offrl_zoo.data.dataset import Dataset
from offrl_zoo.errors import CheckpointError, ConfigError, TrainingDiverged, raise_pending_sigint
from offrl_zoo.io import Checkpoint, JsonlLog, write_json
from offrl_zoo.train.evaluator import Evaluator
from offrl_zoo.train.stage_cache import is_cached, load_stage, save_stage, stage_folder, stage_identity

if TYPE_CHECKING:
    from offrl_zoo.train.loggers import RunLoggers

CHECKPOINT = "checkpoint.pt"
DONE = "done"


def stage_seed(seed: int, index: int, stage: Stage) -> int:
    """The seed a stage starts from: derived from the run seed and the stage alone."""
    return derived_seed(seed, index, stage.name, nbytes=4)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict:
    legacy = np.random.get_state()
    assert isinstance(legacy, tuple)  # the global RandomState is an MT19937: its legacy state is a tuple
    kind, keys, pos, has_gauss, cached = legacy
    numpy_state = {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }  # plain types: weights_only-safe
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(state["python"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_algorithm_state(algo: Algorithm, checkpoint: dict, path: Path) -> None:
    """Load the ``algorithm`` entry (``training_state()``) of the checkpoint read from ``path``."""
    try:
        algo.load_training_state(checkpoint["algorithm"])
    except CheckpointError as err:
        raise CheckpointError(f"{path}: its 'algorithm' entry {err}") from None


@dataclass
class StageRun:
    """A stage being trained: where it starts, its batches, and the running sums of its log window."""

    index: int
    stages: list[Stage]
    stage: Stage
    first: int
    steps: int
    rb: ReplayBuffer
    identity: dict | None
    started: float
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    window_start: float = field(default_factory=time.perf_counter)
    window_steps: int = 0


@dataclass
class TrainerSettings:
    seed: int = 0
    steps_cap: int | None = None  # cap every stage at this many steps (``--steps``); recorded
    log_every: int = 1000
    eval_every: int = 5000
    checkpoint_every: int = 10_000
    progress: bool = True
    stage_cache: Path | None = None  # folder of finished shared stages to reuse (and to add to)


class Trainer:
    def __init__(
        self,
        run_dir: str | Path,
        algo: Algorithm,
        dataset: Dataset,
        evaluator: Evaluator | None,
        settings: TrainerSettings,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.algo = algo
        self.dataset = dataset
        self.data = dataset.data.to(algo.device)
        self.holdout = None if dataset.holdout is None else dataset.holdout.to(algo.device)
        self.evaluator = evaluator
        self.settings = settings
        self.metrics_log = JsonlLog(self.run_dir / "metrics.jsonl")
        self.eval_log = JsonlLog(self.run_dir / "eval.jsonl")
        self.checkpoint = Checkpoint(self.run_dir / CHECKPOINT, {"metrics": self.metrics_log, "eval": self.eval_log})
        self.generator = torch.Generator(device=algo.device)
        self.elapsed = 0.0
        self.last_eval: dict | None = None
        self.bar = tqdm(disable=True)  # a silent bar until ``stage_runs`` opens the run's own
        # Called before the algorithm's state is read (evaluation, checkpoint, validation, stage cache);
        # the seed-batched trainer writes the seed's slice of the batched model into ``algo`` here.
        self.before_state_use: Callable[[], None] = lambda: None
        # Whether a cached shared stage (by stage index) may replace training it.
        self.may_reuse: Callable[[int], bool] = lambda index: True
        # Evaluates the policy in place of ``evaluator(algo)`` (None: not done there, evaluate alone): a seed batch
        # evaluates all its seeds at once.
        self.evaluate_policy: Callable[[], dict | None] | None = None
        self.vectorized = False  # trained in a seed batch: its float rounding differs, so do its cached stages
        # who draws the batches of the stage in progress; a checkpoint keeps it, so a resumed stage goes on drawing
        # as it began even where config draw=auto would now resolve otherwise (another device, a seed batch)
        self.draw = "buffer"
        self.loggers: RunLoggers | None = None  # --logger: sent what each checkpoint covers (train/loggers.py)

    def planned_steps(self, stage: Stage) -> int:
        cap = self.settings.steps_cap
        return stage.steps if cap is None else min(stage.steps, cap)

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, stage_index: int, next_step: int, sampler_state: dict, elapsed: float) -> None:
        self._check_finite_weights(stage_index, next_step)
        self.checkpoint.save(
            {
                "algorithm": self.algo.training_state(),
                "stage_index": stage_index,
                "next_step": next_step,
                "rng": rng_state(self.algo.device),
                "generator": self.generator.get_state(),
                "sampler": sampler_state,
                "draw": self.draw,
                "elapsed": elapsed,
            }
        )
        if self.loggers is not None:
            self.loggers.forward({"metrics": self.metrics_log.offset(), "eval": self.eval_log.offset()})

    def _check_finite_weights(self, stage_index: int, next_step: int) -> None:
        """Never overwrite the last good checkpoint with NaN/Inf weights (a step can break the weights
        while its logged loss, computed before the step, is still finite). One host sync per checkpoint."""
        tensors = [*self.algo.named_parameters(), *self.algo.named_buffers()]
        finite = torch.stack([torch.isfinite(t).all() for _, t in tensors if t.is_floating_point()])
        if not bool(finite.all()):
            name = next(n for n, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all()))
            raise TrainingDiverged(
                f"stage index {stage_index}, step {next_step}: weights {name!r} hold NaN/Inf; {self._last_good()}"
            )

    def _last_good(self) -> str:
        path = self.run_dir / CHECKPOINT
        if path.is_file():
            return f"last good checkpoint kept: {path}"
        return "no checkpoint yet (it diverged before the first one)"

    def load_checkpoint(self) -> dict | None:
        """Restore the last checkpoint (logs cut back to it); None, with empty logs, when there is none."""
        return self.checkpoint.resume(self._restore)

    def _restore(self, state: dict) -> None:
        load_algorithm_state(self.algo, state, self.checkpoint.path)  # copies the CPU weights to the device
        set_rng_state(state["rng"], self.algo.device)
        self.generator.set_state(state["generator"])

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> dict:
        with closing(self.stage_runs()) as runs:  # an error while stepping closes it (and its loggers) now
            for run in runs:
                self.train_stage(run)
        return self.result()

    def train_stage(self, run: StageRun) -> None:
        """The remaining steps of ``run``, one at a time, each followed by its bookkeeping (``after_step``)."""
        seed = stage_seed(self.settings.seed, run.index, run.stage)
        step_fn = training_step(self.algo, run.stage, self.data, run.rb, seed, self.draw)
        for step in range(run.first, run.steps):
            self.after_step(run, step, step_fn(step))

    def stage_runs(self) -> Generator[StageRun, None, None]:
        """Each stage still to train, ready to step; between them the trainer bookkeeps (and reuses
        cached shared stages). Whoever iterates calls ``after_step`` once per update."""
        stages = self.algo.stages()
        resume = self.load_checkpoint()
        if self.loggers is not None:
            self.loggers.start(resume)
        if resume is None:  # the caller seeded the global RNGs before building the algorithm
            self.generator.manual_seed(self.settings.seed)
        start_stage = resume["stage_index"] if resume else 0
        self.elapsed = resume["elapsed"] if resume else 0.0
        total = sum(self.planned_steps(s) for s in stages)
        done_before = sum(self.planned_steps(s) for s in stages[:start_stage]) + (resume["next_step"] if resume else 0)
        if resume is not None:
            self._announce_resume(stages, start_stage, resume["next_step"], done_before, total)
        self.bar = tqdm(
            total=total,
            initial=done_before,
            disable=not self.settings.progress,
            unit="step",
            dynamic_ncols=True,
            desc=self.algo.name,
        )
        try:
            for index in range(start_stage, len(stages)):
                first = resume["next_step"] if (resume and index == start_stage) else 0
                sampler = resume["sampler"] if (resume and index == start_stage) else None
                # checkpoints from before draw= existed drew from the buffer
                draw = resume.get("draw", "buffer") if (resume and index == start_stage and first > 0) else None
                run = self._begin_stage(index, stages, first, sampler, draw)
                if run is not None:
                    yield run
                    self.elapsed = time.perf_counter() - run.started
        except BaseException:  # failed, interrupted or dropped from a seed batch: no more lines to send
            if self.loggers is not None:
                self.loggers.close(failed=True)
            raise
        finally:
            self.bar.close()
            if self.evaluator is not None:
                self.evaluator.close()

    def _announce_resume(self, stages: list[Stage], index: int, step: int, done: int, total: int) -> None:
        where = f"stage {stages[index].name!r} at step {step:,}" if index < len(stages) else "the end of training"
        print(
            f"  resuming from {self.checkpoint.path}: {where} ({done:,} of {total:,} steps done)",
            file=sys.stderr,
            flush=True,
        )

    def result(self) -> dict:
        if self.last_eval is None:  # resumed after the last evaluation: take it from the log
            evals = self.eval_log.read()
            self.last_eval = evals[-1] if evals else None
        return {"elapsed": self.elapsed, "final_eval": self.last_eval}

    def _begin_stage(
        self, index: int, stages: list[Stage], first: int, sampler_state: dict | None, draw: str | None = None
    ) -> StageRun | None:
        """The stage's replay buffer and seeds; None when its result was taken from the stage cache. ``draw``: who
        drew the batches of a stage resumed in its middle (None: as ``Algorithm.batch_draw`` says)."""
        stage = stages[index]
        if draw == "graph" and self.vectorized:
            raise ConfigError(
                f"{self.checkpoint.path}: stage {stage.name!r} drew its batches inside the update (draw=graph) and "
                "a seed batch draws them from buffers: resume this run alone (without --vectorize-seeds)"
            )
        self.draw = draw or self.algo.batch_draw(stage, self.vectorized)
        steps = self.planned_steps(stage)
        is_last = index == len(stages) - 1
        rb = make_replay_buffer(self.data, stage.batch_size, stage.sampling, self.generator)
        s = self.settings
        if sampler_state:
            rb._sampler.load_state_dict(sampler_state)
        elif first == 0:  # a fresh stage: its randomness depends on (seed, stage) only, see stage_cache
            seed_everything(stage_seed(s.seed, index, stage))
            self.generator.manual_seed(stage_seed(s.seed, index, stage))
        identity = None
        if stage.shared is not None and s.stage_cache is not None:
            identity = stage_identity(stage, self.algo, self.dataset, s.seed, steps, self.vectorized)
            reuse = first == 0 and self.may_reuse(index)
            if reuse and load_stage(s.stage_cache, identity, self.algo, stage) is not None:
                folder = stage_folder(s.stage_cache, identity, stage)
                self.metrics_log.append({"stage": stage.name, "step": steps, "reused_stage": str(folder)})
                self.save_checkpoint(index + 1, 0, {}, self.elapsed)
                self.bar.update(steps)
                if is_last and stage.has_policy and self.evaluator is not None:  # the run's final score
                    self.last_eval = self._evaluate(stage, steps, self.elapsed)
                return None
        self.algo.train()
        return StageRun(index, stages, stage, first, steps, rb, identity, time.perf_counter() - self.elapsed)

    def stage_is_cached(self, index: int) -> bool:
        stage = self.algo.stages()[index]
        if stage.shared is None or self.settings.stage_cache is None:
            return False
        identity = stage_identity(
            stage, self.algo, self.dataset, self.settings.seed, self.planned_steps(stage), self.vectorized
        )
        return is_cached(self.settings.stage_cache, identity, stage)

    def after_step(self, run: StageRun, step: int, metrics: TensorDict) -> None:
        """Logs, evaluates, caches and checkpoints as due after update ``step`` of ``run``."""
        raise_pending_sigint()
        for key, value in metrics.items():
            run.sums[key] = run.sums[key] + value if key in run.sums else value.detach().clone()
            run.counts[key] = run.counts.get(key, 0) + 1
        run.window_steps += 1
        done, s, stage, steps = step + 1, self.settings, run.stage, run.steps
        checkpoint_now = done % s.checkpoint_every == 0 or done == steps
        eval_now = (
            self.evaluator is not None
            and stage.has_policy
            and (done % s.eval_every == 0 or (run.index == len(run.stages) - 1 and done == steps))
        )
        log_now = done % s.log_every == 0 or checkpoint_now
        if (log_now and self.holdout is not None) or eval_now or checkpoint_now:
            self.before_state_use()
        if log_now:
            means = {k: v / run.counts[k] for k, v in run.sums.items()} | self._validation(stage, run.index, done)
            record = self._log(
                stage,
                run.index,
                run.stages,
                done,
                means,
                run.window_steps,
                time.perf_counter() - run.window_start,
                time.perf_counter() - run.started,
            )
            self.bar.set_postfix(
                {k: f"{v:.3g}" for k, v in record.items() if k.endswith("loss") and "/" not in k}, refresh=False
            )
            run.sums, run.counts, run.window_start, run.window_steps = {}, {}, time.perf_counter(), 0
        if eval_now:
            self.last_eval = self._evaluate(stage, done, time.perf_counter() - run.started)
        if run.identity is not None and s.stage_cache is not None and done == steps:  # (no identity without one)
            save_stage(s.stage_cache, run.identity, self.algo, stage)
        if checkpoint_now:
            finished_stage = done == steps
            self.save_checkpoint(
                run.index + 1 if finished_stage else run.index,
                0 if finished_stage else done,
                {} if finished_stage else run.rb._sampler.state_dict(),
                time.perf_counter() - run.started,
            )
        self.bar.update(1)

    def _validation(self, stage: Stage, index: int, done: int) -> dict[str, torch.Tensor]:
        """``validation_metrics`` on a held-out batch of the stage's size, drawn with replacement (as IDQL
        does) from a random stream of its own, so that training and resuming are unaffected by it."""
        if self.holdout is None:
            return {}
        seed = stage_seed(self.settings.seed, index, stage) + done
        rows = torch.randint(len(self.holdout), (stage.batch_size,), generator=torch.Generator().manual_seed(seed))
        devices = [self.algo.device] if self.algo.device.type == "cuda" else []
        was_training = self.algo.training
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            self.algo.eval()
            try:
                metrics = self.algo.validation_metrics(self.holdout[rows.to(self.holdout.device)])
            finally:
                self.algo.train(was_training)
        return {} if metrics is None else {f"val/{k}": v.detach() for k, v in metrics.items()}

    def _log(self, stage, index, stages, done, means, window_steps, window_time, elapsed) -> dict:
        values = TensorDict(means).to("cpu")  # one host sync per window
        record = {k: float(v) for k, v in values.items()}
        for key, value in record.items():
            if not np.isfinite(value):
                raise TrainingDiverged(
                    f"stage {stage.name!r}, steps {done - window_steps + 1}..{done}: {key} became {value}; "
                    f"{self._last_good()}"
                )
        global_step = sum(self.planned_steps(s) for s in stages[:index]) + done
        record.update(
            stage=stage.name,
            step=done,
            global_step=global_step,
            time=round(elapsed, 3),
            updates_per_s=round(window_steps / max(window_time, 1e-9), 2),
        )
        self.metrics_log.append(record)
        return record

    def _evaluate(self, stage: Stage, done: int, elapsed: float) -> dict:
        evaluator = self.evaluator
        assert evaluator is not None  # called only when the trainer has one
        result = None if self.evaluate_policy is None else self.evaluate_policy()
        if result is None:
            result = evaluator(self.algo)
        result.update(stage=stage.name, step=done, time=round(elapsed, 3), protocol=evaluator.protocol(self.algo))
        self.eval_log.append(result)
        return result

    def mark_done(self, summary: dict) -> None:
        write_json(self.run_dir / DONE, summary)
