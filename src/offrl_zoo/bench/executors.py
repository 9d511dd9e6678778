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
import dataclasses
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
from offrl_zoo.train.run_dir import TRAIN_LOG
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
    vectorize_seeds: bool = False  # consecutive seeds of one algorithm and task as one batched process
    loggers: tuple[str, ...] = ()  # --logger of each run; W&B groups a sweep's runs by the store's name


Group = tuple[RunSpec, ...]  # runs trained by one process: one run, or seeds batched with --vectorize-seeds


def seed_groups(runs: list[RunSpec], vectorize: bool) -> list[Group]:
    """One group per run; with ``vectorize``, the runs that differ only in consecutive seeds form one group
    (one ``train --seeds K --vectorize-seeds`` process)."""
    if not vectorize:
        return [(r,) for r in runs]
    by_rest: dict[RunSpec, list[RunSpec]] = {}
    for run in runs:
        by_rest.setdefault(dataclasses.replace(run, seed=0), []).append(run)
    groups: list[Group] = []
    for members in by_rest.values():
        members.sort(key=lambda r: r.seed)
        chunk = [members[0]]
        for run in members[1:]:
            if run.seed != chunk[-1].seed + 1:
                groups.append(tuple(chunk))
                chunk = []
            chunk.append(run)
        groups.append(tuple(chunk))
    return groups


def label(group: Group) -> str:
    if len(group) == 1:
        return group[0].label()
    return f"{group[0].algorithm} {group[0].task} seeds {group[0].seed}-{group[-1].seed} (vectorised)"


def train_command(group: Group, store: Path, s: TrainSettings) -> list[str]:
    spec = group[0]
    cmd = [
        sys.executable,
        "-m",
        "offrl_zoo.cli",
        "train",
        spec.algorithm,
        "--task",
        spec.task,
        "--seed",
        str(spec.seed),
        "--stage-cache",
        str(store / "stages"),
        "--device",
        s.device,
        "--threads",
        str(s.threads),
        "--eval-every",
        str(s.eval_every),
        "--checkpoint-every",
        str(s.checkpoint_every),
        "--log-every",
        str(s.log_every),
        "--data-source",
        s.data_source,
        "--no-progress",
    ]
    if s.vectorize_seeds:
        cmd += ["--seeds", str(len(group)), "--vectorize-seeds", "--out", str(store / "runs")]
    else:
        cmd += ["--run-dir", str(spec.run_dir(store))]
    if spec.preset:
        cmd += ["--preset", spec.preset]
    if (budget_file := spec.budget_file(store)) is not None:
        cmd += ["--config", str(budget_file)]
    if spec.steps is not None:
        cmd += ["--steps", str(spec.steps)]
    if s.eval_episodes is not None:
        cmd += ["--eval-episodes", str(s.eval_episodes)]
    for kind in s.loggers:
        cmd += ["--logger", kind]
    if s.loggers:
        cmd += ["--logger-group", store.resolve().name]
    return cmd + list(spec.overrides)


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent dies (Linux; a no-op elsewhere)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def launch(group: Group, store: Path, settings: TrainSettings) -> subprocess.Popen:
    """The training process of ``group``; its output goes to each run's ``train.log`` (one file, linked)."""
    logs = [spec.run_dir(store) / TRAIN_LOG for spec in group]
    for path in logs:
        path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(settings.threads))  # no OpenMP oversubscription
    with open(logs[0], "a") as log:  # the child holds its own copy of the descriptor
        for path in logs[1:]:  # the other seeds' logs become this one (a file system without links: no copy)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
                os.link(logs[0], path)
        return subprocess.Popen(
            train_command(group, store, settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            env=env,
        )


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


def shares_stages(a: Group, b: Group) -> bool:
    """Runs that may reuse each other's shared stages (same task, seed and stage kind, e.g. DTQL and
    DTQL-KL pretraining) are not run side by side, so the second one finds the first one's finished
    stage in the cache instead of training it again."""
    return any(
        x.task == y.task and x.seed == y.seed and bool(set(x.shared_kinds) & set(y.shared_kinds)) for x in a for y in b
    )


LOCKED_RETRY_S = 5.0  # how often a run trained by another process (another sweep on the store) is checked


def run_local(
    runs: list[RunSpec], store: Path, settings: TrainSettings, jobs: int, log: Callable[[str], None] = print
) -> dict[RunSpec, str]:
    """Run ``runs`` as up to ``jobs`` training processes. A run that another process is training (a second
    sweep on the same store) is left to it and checked again later, so both sweeps share the work and
    each ends with every run finished."""
    results: dict[RunSpec, str] = {}
    queue = seed_groups(runs, settings.vectorize_seeds)
    active: dict[subprocess.Popen, tuple[Group, float]] = {}
    not_before: dict[Group, float] = {}  # locked runs: when to look again
    total = len(runs)
    try:
        while queue or active:
            while len(active) < jobs:
                now = time.monotonic()
                pick = next(
                    (
                        g
                        for g in queue
                        if not_before.get(g, 0.0) <= now and not any(shares_stages(g, a) for a, _ in active.values())
                    ),
                    None,
                )
                if pick is None:
                    break
                queue.remove(pick)
                if any(run_status(spec.run_dir(store)) == "running" for spec in pick):  # another process holds it
                    _wait_for_other(pick, queue, not_before, log)
                    continue
                active[launch(pick, store, settings)] = (pick, time.perf_counter())
            time.sleep(0.2)
            for proc in [p for p in active if p.poll() is not None]:
                group, started = active.pop(proc)
                statuses = {spec: outcome(spec, store) for spec in group}
                if "locked" in statuses.values():
                    _wait_for_other(group, queue, not_before, log)
                    continue
                for spec, status in statuses.items():
                    results[spec] = status
                    line = summary_line(spec, store, status, time.perf_counter() - started)
                    log(f"[{len(results)}/{total}] {line}")
    finally:
        for proc in active:  # Ctrl-C: stop the children too (they resume from their checkpoints)
            proc.terminate()
        for proc in active:
            proc.wait()
    return results


def _wait_for_other(
    group: Group, queue: list[Group], not_before: dict[Group, float], log: Callable[[str], None]
) -> None:
    if group not in not_before:
        log(f"{label(group)}: being trained by another process; this sweep waits for it")
    not_before[group] = time.monotonic() + LOCKED_RETRY_S
    queue.append(group)


def run_ray(
    runs: list[RunSpec],
    store: Path,
    settings: TrainSettings,
    address: str | None,
    retries: int = 3,
    log: Callable[[str], None] = print,
) -> dict[RunSpec, str]:
    """One Ray task per run, requesting ``threads`` CPUs (and one GPU on a CUDA device). The store must be
    on a filesystem every worker sees. A worker that dies is retried by Ray; the run resumes from its
    last checkpoint."""
    try:
        import ray
    except ImportError as err:
        from offrl_zoo.errors import FlagError

        raise FlagError("--executor ray needs Ray: pip install 'offrl-zoo[ray]'") from err
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    gpus = 1 if settings.device.startswith("cuda") else 0

    @ray.remote(num_cpus=settings.threads, num_gpus=gpus, max_retries=retries)
    def train_task(group: Group) -> tuple[dict[RunSpec, str], float]:
        started = time.perf_counter()
        proc = launch(group, store, settings)
        proc.wait()
        statuses = {spec: outcome(spec, store) for spec in group}
        if "interrupted" in statuses.values():  # the training process was killed: let Ray retry the task
            raise RuntimeError(f"{label(group)}: training process exited with {proc.returncode}")
        return statuses, time.perf_counter() - started

    pending = {train_task.remote(group): group for group in seed_groups(runs, settings.vectorize_seeds)}
    results: dict[RunSpec, str] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        group = pending.pop(ready[0])
        try:
            statuses, seconds = ray.get(ready[0])
        except Exception:  # retries exhausted
            statuses, seconds = {spec: outcome(spec, store) for spec in group}, 0.0
        for spec, status in statuses.items():
            results[spec] = status
            log(f"[{len(results)}/{len(runs)}] {summary_line(spec, store, status, seconds)}")
    return results
