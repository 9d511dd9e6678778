"""Executors run a sweep's runs as ``offrl-zoo train`` processes: ``local`` (a bounded pool on this
machine) or ``ray`` (one Ray task per run on an existing cluster, or a local Ray instance).

Every run trains in its own process, writing to its run directory in the results store; the trainer's
checkpoints make a killed run resume where it stopped, and its lock keeps two processes off one run.
Child processes die with the sweep (Linux parent-death signal), so a killed ``compare`` leaves no
orphan writing to the store.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from offrl_zoo.bench.sweep import RunSpec, run_status
from offrl_zoo.train.run import TRAIN_LOG
from offrl_zoo.train.trainer import DONE


@dataclass
class TrainSettings:
    device: str = "cpu"
    threads: int = 1
    eval_every: int = 5000
    eval_episodes: int | None = None
    checkpoint_every: int = 10_000
    log_every: int = 1000
    data_source: str = "auto"


def train_command(spec: RunSpec, store: Path, s: TrainSettings) -> list[str]:
    cmd = [sys.executable, "-m", "offrl_zoo.cli", "train", spec.algorithm, "--task", spec.task,
           "--seed", str(spec.seed), "--run-dir", str(spec.run_dir(store)), "--stage-cache", str(store / "stages"),
           "--device", s.device, "--threads", str(s.threads), "--eval-every", str(s.eval_every),
           "--checkpoint-every", str(s.checkpoint_every), "--log-every", str(s.log_every),
           "--data-source", s.data_source, "--no-progress"]
    if spec.preset:
        cmd += ["--preset", spec.preset]
    if (budget_file := spec.budget_file(store)) is not None:
        cmd += ["--config", str(budget_file)]
    if spec.steps is not None:
        cmd += ["--steps", str(spec.steps)]
    if s.eval_episodes is not None:
        cmd += ["--eval-episodes", str(s.eval_episodes)]
    return cmd + list(spec.overrides)


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent dies (Linux; a no-op elsewhere)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def launch(spec: RunSpec, store: Path, settings: TrainSettings) -> subprocess.Popen:
    run_dir = spec.run_dir(store)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(settings.threads))  # no OpenMP oversubscription
    with open(run_dir / TRAIN_LOG, "a") as log:  # the child holds its own copy of the descriptor
        return subprocess.Popen(train_command(spec, store, settings), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent, env=env)


def outcome(spec: RunSpec, store: Path) -> str:
    """What a finished process left: done | failed | interrupted | locked (another process trains it)."""
    status = run_status(spec.run_dir(store))
    if status in ("done", "failed"):
        return status
    return "locked" if status == "running" else "interrupted"  # its lock is held by another process


def summary_line(spec: RunSpec, store: Path, status: str, seconds: float) -> str:
    text = f"{spec.label()}: {status} ({seconds / 60:.1f} min)"
    done = spec.run_dir(store) / DONE
    if status == "done" and done.is_file():
        final = json.loads(done.read_text()).get("final_eval") or {}
        if final.get("score_mean") is not None:
            text += f", final score {final['score_mean']:.1f}"
        elif "return_mean" in final:
            text += f", final return {final['return_mean']:.2f}"
    elif status in ("failed", "interrupted", "locked"):
        text += f"; see {spec.run_dir(store) / TRAIN_LOG}"
    return text


def shares_stages(a: RunSpec, b: RunSpec) -> bool:
    """Runs that may reuse each other's shared stages (same task, seed and stage kind, e.g. DTQL and
    DTQL-KL pretraining) are not run side by side, so the second one finds the first one's finished
    stage in the cache instead of training it again."""
    return a.task == b.task and a.seed == b.seed and bool(set(a.shared_kinds) & set(b.shared_kinds))


LOCKED_RETRY_S = 5.0  # how often a run trained by another process (another sweep on the store) is checked


def run_local(runs: list[RunSpec], store: Path, settings: TrainSettings, jobs: int,
              log: Callable[[str], None] = print) -> dict[RunSpec, str]:
    """Run ``runs`` as up to ``jobs`` training processes. A run that another process is training (a second
    sweep on the same store) is left to it and checked again later, so both sweeps share the work and
    each ends with every run finished."""
    results: dict[RunSpec, str] = {}
    queue = list(runs)
    active: dict[subprocess.Popen, tuple[RunSpec, float]] = {}
    not_before: dict[RunSpec, float] = {}  # locked runs: when to look again
    total = len(runs)
    try:
        while queue or active:
            while len(active) < jobs:
                now = time.monotonic()
                pick = next((r for r in queue if not_before.get(r, 0.0) <= now
                             and not any(shares_stages(r, a) for a, _ in active.values())), None)
                if pick is None:
                    break
                queue.remove(pick)
                if run_status(pick.run_dir(store)) == "running":  # another process holds its lock
                    _wait_for_other(pick, queue, not_before, log)
                    continue
                active[launch(pick, store, settings)] = (pick, time.perf_counter())
            time.sleep(0.2)
            for proc in [p for p in active if p.poll() is not None]:
                spec, started = active.pop(proc)
                status = outcome(spec, store)
                if status == "locked":
                    _wait_for_other(spec, queue, not_before, log)
                    continue
                results[spec] = status
                line = summary_line(spec, store, status, time.perf_counter() - started)
                log(f"[{len(results)}/{total}] {line}")
    finally:
        for proc in active:  # Ctrl-C: stop the children too (they resume from their checkpoints)
            proc.terminate()
        for proc in active:
            proc.wait()
    return results


def _wait_for_other(spec: RunSpec, queue: list[RunSpec], not_before: dict[RunSpec, float],
                    log: Callable[[str], None]) -> None:
    if spec not in not_before:
        log(f"{spec.label()}: being trained by another process; this sweep waits for it")
    not_before[spec] = time.monotonic() + LOCKED_RETRY_S
    queue.append(spec)


def run_ray(runs: list[RunSpec], store: Path, settings: TrainSettings, address: str | None,
            retries: int = 3, log: Callable[[str], None] = print) -> dict[RunSpec, str]:
    """One Ray task per run, requesting ``threads`` CPUs (and one GPU on a CUDA device). The store must be
    on a filesystem every worker sees. A worker that dies is retried by Ray; the run resumes from its
    last checkpoint."""
    try:
        import ray
    except ImportError as err:
        from offrl_zoo.errors import ConfigError

        raise ConfigError("--executor ray needs Ray: pip install 'offrl-zoo[ray]'") from err
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    gpus = 1 if settings.device.startswith("cuda") else 0

    @ray.remote(num_cpus=settings.threads, num_gpus=gpus, max_retries=retries)
    def train_task(spec: RunSpec) -> tuple[str, float]:
        started = time.perf_counter()
        proc = launch(spec, store, settings)
        proc.wait()
        status = outcome(spec, store)
        if status == "interrupted":  # the training process was killed: let Ray retry the task
            raise RuntimeError(f"{spec.label()}: training process exited with {proc.returncode}")
        return status, time.perf_counter() - started

    pending = {train_task.remote(spec): spec for spec in runs}
    results: dict[RunSpec, str] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        spec = pending.pop(ready[0])
        try:
            status, seconds = ray.get(ready[0])
        except Exception:  # retries exhausted
            status, seconds = outcome(spec, store), 0.0
        results[spec] = status
        log(f"[{len(results)}/{len(runs)}] {summary_line(spec, store, status, seconds)}")
    return results
