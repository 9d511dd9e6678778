"""One training run from names to a finished run directory: config → data → algorithm → Trainer."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from offrl_zoo import registry
from offrl_zoo.algorithm import Algorithm, cpu_has_bf16_matmul
from offrl_zoo.config import ConfigError, ResolvedConfig, resolve
from offrl_zoo.data import load_dataset, prepare, sources
from offrl_zoo.data.dataset import Dataset
from offrl_zoo.data.loading import custom_task
from offrl_zoo.envs.tasks import Task, get_task
from offrl_zoo.errors import ConfigWarning, FlagError, Interrupted
from offrl_zoo.io import load_torch, remove_stale_temps, write_json
from offrl_zoo.spec import DataSpec
from offrl_zoo.train.cost import processor, run_cost
from offrl_zoo.train.evaluator import Evaluator, eval_deterministic
from offrl_zoo.train.identity import check_identity, claim_run_dir
from offrl_zoo.train.loggers import LoggerSettings, open_run_loggers
from offrl_zoo.train.run_dir import FAILED, claim_runs, failures_marked, interrupted_run
from offrl_zoo.train.trainer import CHECKPOINT, Trainer, TrainerSettings, load_algorithm_state, seed_everything


@dataclass
class RunRequest:
    """Everything that defines a run; saved (resolved) as the run's ``config.yaml``."""

    algorithm: str
    task: str | None = None
    dataset: str | None = None  # HDF5 path or minari:ID, replaces/defines the task's data
    env: str | None = None  # Gymnasium id for an unregistered --dataset
    preset: str | None = None
    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "cpu"
    steps: int | None = None  # caps every stage
    eval_every: int = 5000
    eval_episodes: int | None = None  # None: the task's default
    deterministic_eval: bool | None = None  # None: the task's default (sampled actions on the toys)
    log_every: int = 1000
    checkpoint_every: int = 10_000
    transitions: str = "qlearning"  # qlearning | next_observations (HDF5 files)
    download: bool = True
    data_source: str = "auto"  # D4RL tasks: auto | d4rl | generated (see offrl_zoo.data.loading)

    def resolve_task(self) -> Task:
        if self.task is not None:
            return get_task(self.task)
        if self.dataset is None:
            raise FlagError("give --task, or --dataset PATH with --env ENV_ID, or --dataset minari:ID")
        return custom_task(self.dataset, self.env)  # a Minari dataset's own env when --env is not given


def default_run_dir(out: str | Path, request: RunRequest, task: Task) -> Path:
    return default_run_dirs(out, [request], task)[0]


def default_run_dirs(out: str | Path, requests: list[RunRequest], task: Task) -> list[Path]:
    """``OUT/ALGO/TASK/seedN`` of requests that differ in their seed only (``TASK``: ``_task_folder``)."""
    folder = Path(out) / requests[0].algorithm / _task_folder(requests[0], task)
    return [folder / f"seed{r.seed}" for r in requests]


def _task_folder(request: RunRequest, task: Task) -> str:
    """The task's name, and with ``--dataset`` the data's: a file's base name is no identity, so the first
    8 hex digits of its SHA-256 follow it (two files named ``data.hdf5`` never share a folder)."""
    name = task.id.replace(":", "_")
    if request.dataset is None:
        return name
    if request.task is not None:  # a registered task's data replaced: the folder names the data used
        name += "_" + Path(request.dataset.removeprefix("minari:")).stem
    if request.dataset.startswith("minari:"):
        return name  # an installed Minari id names one dataset (its SHA-256 is still checked)
    return f"{name}-{sources.dataset_file_sha256(request.dataset)[:8]}"


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in ("offrl-zoo", "torch", "torchrl", "tensordict", "gymnasium", "mujoco", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def check_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FlagError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None:  # capture's streams and graphs use the current device
        torch.cuda.set_device(dev)
    return dev


def build_algorithm(name: str, spec: DataSpec, cfg: Any, device: str | torch.device) -> Algorithm:
    return registry.get(name)(spec, cfg, device)


def _config_record(request: RunRequest, task: Task, resolved: ResolvedConfig, spec: DataSpec, sha256: str) -> dict:
    return {
        "request": dataclasses.asdict(request),
        "task": task.id,
        "dataset_sha256": sha256,
        "algorithm_config": resolved.to_dict(),
        "config_sources": resolved.sources,
        "spec": dataclasses.asdict(spec),
    }


def train(
    request: RunRequest,
    out: str | Path = "runs",
    run_dir: str | Path | None = None,
    progress: bool = True,
    stage_cache: str | Path | None = None,
    loggers: LoggerSettings | None = None,
) -> Path:
    """Train (or resume) one run, or reuse it when it has finished; returns its directory. A run directory
    holding another experiment is refused (``check_identity``).

    ``stage_cache``: a folder of finished shared stages (``Stage.shared``) to reuse and to add to. It
    changes no result, so it is not part of the run's identity; nor are ``loggers`` (``--logger``).
    """
    algo_cls = registry.get(request.algorithm)
    task = request.resolve_task()
    resolved = resolve(algo_cls, task.id, request.preset, request.config_file, request.overrides)
    device = check_device(request.device)
    run_dir = Path(run_dir) if run_dir else default_run_dir(out, request, task)
    try:
        with claim_runs([run_dir]) as todo, failures_marked(todo):
            if todo:
                _train_locked(request, task, resolved, device, run_dir, progress, stage_cache, loggers)
            else:
                check_finished(request, task, resolved, run_dir)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_run(run_dir)) from None
    return run_dir


def _train_locked(
    request: RunRequest,
    task: Task,
    resolved: ResolvedConfig,
    device: torch.device,
    run_dir: Path,
    progress: bool,
    stage_cache: str | Path | None,
    loggers: LoggerSettings | None = None,
) -> None:
    trainer = prepare_trainer(request, task, resolved, device, run_dir, progress, stage_cache, loggers=loggers)
    finish_run(trainer, trainer.run())


def prepare_trainer(
    request: RunRequest,
    task: Task,
    resolved: ResolvedConfig,
    device: torch.device,
    run_dir: Path,
    progress: bool,
    stage_cache: str | Path | None,
    seed_batch: list[int] | None = None,
    dataset: Dataset | None = None,
    loggers: LoggerSettings | None = None,
) -> Trainer:
    """Data, algorithm, claimed run directory and provenance of a run, ready to train. Seeds the global
    RNGs from the run's seed before building the algorithm, as every run does. ``dataset``: the request's
    data when the caller has loaded it (``load_request_data``)."""
    data = load_run_data(request, task, resolved, dataset)
    check_identity(run_dir, data.record)  # before anything in the folder is touched
    (run_dir / FAILED).unlink(missing_ok=True)  # a retry of a failed run starts clean of the marker
    remove_stale_temps(run_dir)  # a kill during a write leaves only a temp file, never a half-written one
    prepared = data.prepared
    seed_everything(request.seed)  # network init and the training stream both follow the seed
    algo = build_algorithm(request.algorithm, prepared.spec, resolved.config, device)
    stages = algo.stages()
    check_batch_sizes(stages, len(prepared), task.id)
    # who draws each stage's batches; a draw=graph the run cannot take is refused before its directory is claimed
    draws = {s.name: algo.batch_draw(s, seed_batch is not None) for s in stages}
    claim_run_dir(run_dir, data.record)  # after every check, so a refused config leaves nothing to conflict with
    deterministic = eval_deterministic(request.deterministic_eval, task.deterministic_eval)
    evaluator = Evaluator(
        task, request.eval_episodes or task.eval_episodes, seed=request.seed + 100, deterministic=deterministic
    )
    settings = TrainerSettings(
        seed=request.seed,
        steps_cap=request.steps,
        log_every=request.log_every,
        eval_every=request.eval_every,
        checkpoint_every=request.checkpoint_every,
        progress=progress,
        stage_cache=Path(stage_cache) if stage_cache else None,
    )
    trainer = Trainer(run_dir, algo, prepared, evaluator, settings)
    _announce(request, task, run_dir, data.dataset)
    earlier = _earlier_sessions(run_dir)  # read before this session rewrites provenance.json
    write_json(
        run_dir / "provenance.json",
        {
            "algorithm": registry.provenance(request.algorithm),
            "versions": _versions(),
            "git_sha": git_sha(),
            "python": platform.python_version(),
            "host": platform.node(),
            "device": str(device),
            "processor": processor(device),
            "threads": torch.get_num_threads(),
            "earlier_sessions": earlier,
            "dataset": data.dataset.provenance.to_dict(),
            "transforms": data.transforms,
            "protocol": evaluator.protocol(algo),
            "stages": {
                s.name: {
                    "planned_steps": s.steps,
                    "run_steps": trainer.planned_steps(s),
                    "batch_size": s.batch_size,
                    "sampling": s.sampling,
                    "draw": draws[s.name],  # as this session starts a stage
                }
                for s in stages
            },
            "shortened": request.steps is not None and any(trainer.planned_steps(s) < s.steps for s in stages),
            "vectorized_seeds": seed_batch,  # the seeds trained with it as one batched model, if any
        },
    )
    if loggers is not None:  # after config.yaml and provenance.json, which the loggers are sent
        trainer.loggers = open_run_loggers(trainer, loggers, f"{request.algorithm}/{task.id}/seed{request.seed}")
    return trainer


SESSION_KEYS = ("git_sha", "versions", "python", "host", "device", "processor", "threads")


def _earlier_sessions(run_dir: Path) -> list[dict]:
    """What trained a resumed run before this session (code version, packages, host, device, threads),
    oldest first, so that a run finished on other code or another machine says so. Empty for a run that
    starts from scratch (no checkpoint: nothing of the earlier sessions is kept)."""
    path = run_dir / "provenance.json"
    if not (path.is_file() and (run_dir / CHECKPOINT).is_file()):
        return []
    old = json.loads(path.read_text())
    return [*old.get("earlier_sessions", []), {k: old.get(k) for k in SESSION_KEYS}]


def _announce(request: RunRequest, task: Task, run_dir: Path, dataset: Dataset) -> None:
    """Say, before training, what the run trains on and where it lands (stderr, beside the progress bar)."""
    p = dataset.provenance
    where = p.path or p.dataset_id
    print(
        f"{request.algorithm} on {task.id}, seed {request.seed} -> {run_dir}\n"
        f"  data: {p.source} {where}: {p.transitions:,} transitions ({p.rule} rule), {p.episodes:,} episodes, "
        f"sha256 {p.sha256[:8]}",
        file=sys.stderr,
        flush=True,
    )


def finish_run(trainer: Trainer, result: dict) -> None:
    """Cost record and the ``done`` marker of a trained run."""
    stages = trainer.algo.stages()
    updates = sum(trainer.planned_steps(s) for s in stages)
    reused = sum(r["step"] for r in trainer.metrics_log.read() if "reused_stage" in r)
    evaluator = trainer.evaluator
    assert evaluator is not None  # prepare_trainer gives every run one
    cost = run_cost(trainer.algo, updates, reused, result["elapsed"], evaluator.deterministic)
    summary = {"final_eval": _summary(result["final_eval"]), "elapsed_s": round(result["elapsed"], 2), "cost": cost}
    trainer.mark_done(summary)
    if trainer.loggers is not None:  # after ``done``: a kill in between may miss a line, never send one twice
        trainer.loggers.finish(summary)


def check_batch_sizes(stages: list, transitions: int, task_id: str) -> None:
    """Refuse, before training, a stage whose batch exceeds the (prepared) dataset."""
    for stage in stages:
        if stage.batch_size > transitions:
            raise ConfigError(
                f"stage {stage.name!r}: batch_size={stage.batch_size} is larger than the dataset of "
                f"{task_id} ({transitions} transitions after preparation); lower batch_size"
            )


def _summary(result: dict | None) -> dict | None:
    if result is None:
        return None
    return {k: v for k, v in result.items() if k not in ("returns", "lengths")}  # keeps the protocol


@dataclass
class RunData:
    """What a run trains on, and its record (``config.yaml``), which identifies the run."""

    dataset: Dataset  # as loaded: its provenance
    prepared: Dataset  # transformed for the algorithm's config
    transforms: dict
    record: dict


def load_request_data(request: RunRequest, task: Task) -> Dataset:
    return load_dataset(
        task, request.dataset, rule=request.transitions, download=request.download, data_source=request.data_source
    )


def load_run_data(request: RunRequest, task: Task, resolved: ResolvedConfig, dataset: Dataset | None = None) -> RunData:
    """The run's data and record; ``dataset``: the request's data, if already loaded (for another seed)."""
    if dataset is None:
        dataset = load_request_data(request, task)
    prepared, transforms = prepare(dataset, resolved.config, seed=request.seed)
    record = _config_record(request, task, resolved, prepared.spec, dataset.provenance.sha256)
    return RunData(dataset, prepared, transforms, record)


def check_finished(
    request: RunRequest, task: Task, resolved: ResolvedConfig, run_dir: Path, dataset: Dataset | None = None
) -> None:
    """A finished run stands for the request (its result is reused) only if it is the requested run."""
    check_identity(run_dir, load_run_data(request, task, resolved, dataset).record)


def load_run(run_dir: str | Path, device: str = "cpu") -> tuple[Algorithm, Task, dict]:
    """The trained algorithm of a run directory (from its checkpoint), its task and its config record."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    record = yaml.safe_load(path.read_text())
    request = RunRequest(**record["request"])
    task = request.resolve_task()
    algo_cls = registry.get(request.algorithm)
    cfg = algo_cls.Config(**record["algorithm_config"])
    if cfg.cpu_bf16_matmul and check_device(device).type == "cpu" and not cpu_has_bf16_matmul():
        # acting only: a run trained with bfloat16 matmuls is still evaluated or exported on a CPU without the
        # units, in float32 (a training resumed there would change its rounding, so training refuses it)
        warnings.warn(
            f"{run_dir}: cpu_bf16_matmul=true but this CPU has no bfloat16 units; acting in float32",
            ConfigWarning,
            stacklevel=2,
        )
        cfg = dataclasses.replace(cfg, cpu_bf16_matmul=False)
    spec_fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in record["spec"].items()}
    spec = DataSpec(**spec_fields)
    algo = algo_cls(spec, cfg, check_device(device))
    if not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"{run_dir}: no {CHECKPOINT} to evaluate")
    load_algorithm_state(algo, load_torch(run_dir / CHECKPOINT, map_location="cpu"), run_dir / CHECKPOINT)
    return algo, task, record
