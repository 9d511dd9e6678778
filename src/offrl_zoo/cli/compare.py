"""``offrl-zoo compare`` (plan → estimate → run → report) and ``offrl-zoo report``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offrl_zoo.cli.args import (
    add_data_source_flag,
    add_device_flag,
    add_fast_flag,
    add_vectorize_flag,
    budget_name,
    episode_count,
    positive_int,
    seed_count,
    seed_int,
    seed_range,
    thread_count,
)

if TYPE_CHECKING:
    import torch

    from offrl_zoo.bench.estimate import RunEstimate
    from offrl_zoo.bench.sweep import RunSpec, Sweep

COMPARE_EXAMPLES = """\
examples:
  offrl-zoo compare dtql dtql-kl iql --suite toy               # quick budget, 3 seeds, minutes on a CPU
  offrl-zoo compare dtql srpo --suite gym-medium --budget paper --device cuda
  offrl-zoo compare dtql iql td3bc --suite gym-medium --budget 20000 --seeds 3
  offrl-zoo compare dtql iql td3bc --suite gym-medium --budget 20000 --seed 3 --seeds 2   # two more seeds
  offrl-zoo compare dtql iql --suite gym --executor ray --ray-address auto --budget paper
  offrl-zoo report results/toy-quick                           # rebuild the report from the store
Re-running the same command skips finished runs and resumes unfinished ones from their checkpoints.
"""
CONFIRM_ABOVE_S = 2 * 3600  # estimated wall time above which compare asks before starting
CHEAPER_CAPS = (10_000, 5_000, 2_000, 1_000)  # step caps the plan offers as a cheaper budget, largest first
PAPER_EVAL_EVERY = 50_000


def add_logger_flag(p: argparse.ArgumentParser) -> None:
    """``--logger`` of ``train`` and ``compare`` (offrl_zoo/train/loggers.py)."""
    p.add_argument(
        "--logger",
        action="append",
        choices=["tensorboard", "wandb", "csv", "none"],
        help="also send each run's metrics, evaluations, config and cost to TensorBoard (RUN_DIR/tensorboard), "
        "W&B (RUN_DIR/wandb; offline without an API key) or CSV files (RUN_DIR/csv), at every checkpoint; "
        "repeatable (default: none)",
    )


def add_compare_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="train algorithms × tasks × seeds and report a statistical comparison",
        epilog=COMPARE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("algorithms", nargs="+", metavar="ALGO")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--suite", help="named task suite (offrl-zoo list suites)")
    where.add_argument("--tasks", nargs="+", help="explicit task ids instead of a suite")
    p.add_argument("--seeds", type=seed_count, default=3, help="seeds SEED..SEED+N-1 (default 3)")
    p.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="the first seed (default 0); e.g. --seed 3 --seeds 2 adds seeds 3 and 4 to a comparison",
    )
    add_vectorize_flag(p, cuda_default=True)
    p.add_argument(
        "--budget",
        type=budget_name,
        default="quick",
        help="paper (official steps), quick (capped, CPU-friendly; default) or a step cap per stage",
    )
    p.add_argument("--out", help="results store (default results/<suite>-<budget>)")
    add_device_flag(p)
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument(
        "--jobs", type=thread_count, help="local runs side by side (default: CPU cores / threads, 1 on cuda)"
    )
    p.add_argument("--threads", type=thread_count, default=1, help="torch threads per run")
    p.add_argument(
        "--eval-every",
        type=positive_int,
        help="steps between evaluations (default: the capped stage length; paper budget: 50 000)",
    )
    p.add_argument("--eval-episodes", type=episode_count, help="episodes per evaluation (default: the task's)")
    add_data_source_flag(p)
    p.add_argument("--yes", action="store_true", help="start without asking, whatever the estimate")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the estimate, train nothing")
    p.add_argument("--no-estimate", action="store_true", help="skip the warm-up timing")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config values applied to every algorithm")
    add_fast_flag(p)
    add_logger_flag(p)
    _add_references_flag(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="rebuild a comparison report from a results store")
    p.add_argument("store")
    p.add_argument("--out", help="report folder (default STORE/report)")
    _add_references_flag(p)
    p.set_defaults(func=cmd_report)


def _add_references_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--references",
        default="shipped",
        metavar="DIR|shipped|none",
        help="reference runs each run is checked against in the report (default: those shipped with "
        "offrl-zoo; see `offrl-zoo reference --help`)",
    )


def _references(args: argparse.Namespace) -> Path | bool:
    return {"shipped": True, "none": False}.get(args.references, Path(args.references))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _budget_values(sweep: Sweep) -> str:
    presets = sorted({r.algorithm for r in sweep.runs if r.preset})
    values = sorted({f"{k}={v}" for r in sweep.runs for k, v in r.budget_config})
    parts = ([f"the quick preset of {', '.join(presets)}"] if presets else []) + values
    return " + ".join(parts) if parts else "no other changes"


def _caps(sweep: Sweep) -> str:
    """The step cap per task: the same for every algorithm (``Budget.for_run``), so named once per cap."""
    caps: dict[int, dict[str, None]] = {}
    for r in sweep.runs:
        if r.steps is not None:
            caps.setdefault(r.steps, {})[r.task] = None
    if len(caps) == 1:
        return f" (≤ {next(iter(caps))} steps per stage for every algorithm)"
    return "".join(f" (≤ {cap} steps per stage on {', '.join(tasks)})" for cap, tasks in caps.items())


def _max_cap(runs: list[RunSpec]) -> int | None:
    return max((r.steps for r in runs if r.steps is not None), default=None)


def _wall(runs: list[RunSpec], estimates: dict, jobs: int, extra_s: float) -> tuple[float, float, float]:
    """(compute, saved by shared stages, wall time with ``jobs`` side by side plus ``extra_s``)."""
    from offrl_zoo.bench.estimate import sweep_compute

    compute, saved = sweep_compute(runs, estimates)
    return compute, saved, compute / min(jobs, len(runs)) + extra_s


def _print_estimate(
    args: argparse.Namespace, todo: list[RunSpec], store: Path, device: torch.device, jobs: int, eval_every: int
) -> float:
    """Print the estimate of what is left to train, and its alternatives; returns the estimated wall time."""
    from offrl_zoo.bench.estimate import estimate_sweep, generation_seconds, rows_to_generate
    from offrl_zoo.bench.sweep import resume_point

    timings: dict = {}
    resume_at = {spec: at for spec in todo if (at := resume_point(spec.run_dir(store))) is not None}
    estimates = estimate_sweep(todo, eval_every, args.eval_episodes, device, timings, resume_at)
    print(f"  estimate on this machine ({device}, {args.threads} thread(s) per run, {jobs} job(s)):")
    _print_runs(estimates, todo)
    rows = rows_to_generate([s.task for s in todo], args.data_source)
    gen_s = generation_seconds(rows)
    compute, saved, wall = _wall(todo, estimates, jobs, gen_s)
    shared = f", after ≈ {_duration(saved)} saved by shared stages" if saved > 0 else ""
    data = f", with ≈ {_duration(gen_s)} generating {len(rows)} dataset(s)" if rows else ""
    where = device.type.upper()
    print(f"  ≈ {_duration(compute)} of compute{shared}, ≈ {_duration(wall)} wall time on this {where}{data}")
    if rows:
        print(_data_line(rows, args.data_source))
    cheaper = _cheaper(args, todo, wall - gen_s, timings, device, jobs)
    if cheaper is not None:
        print(f"  cheaper: with --budget {cheaper[0]}: ≈ {_duration(cheaper[1] + gen_s)} wall time")
    if device.type != "cuda":
        print(_gpu_line(todo, estimates))
    return wall


def _gpu_line(todo: list[RunSpec], estimates: dict[RunSpec, RunEstimate]) -> str:
    """The GPU alternative, priced from the per-update times measured on the reference GPU: eager, and the fast
    path's captured updates where the probe captured them."""
    from offrl_zoo.bench.estimate import gpu_reference, gpu_training_seconds

    ref = gpu_reference()
    seconds, unknown, _ = gpu_training_seconds(todo, estimates)
    fast_s, _, at_eager = gpu_training_seconds(todo, estimates, captured=True)
    missing = f"; no figure for {', '.join(unknown)}" if unknown else ""
    eager_part = f", {', '.join(at_eager)} at eager figures (not captured then)" if at_eager else ""
    return (
        f"  on a GPU (--device cuda): ≈ {_duration(seconds)} of training updates, one run at a time "
        f"(one {ref['device']}, {ref['path']} per-update times measured {ref['date']} at {ref['shapes']}; "
        f"evaluation not included{missing}); with --fast (updates captured as CUDA graphs) ≈ {_duration(fast_s)} "
        f"(the same visit's captured updates{eager_part}); seeds one at a time; measure it there with --device "
        "cuda --dry-run"
    )


def _print_runs(estimates: dict[RunSpec, RunEstimate], todo: list[RunSpec]) -> None:
    """One line per algorithm and task: a whole run's cost, and what is left of those resumed from checkpoints,
    each named under it with the steps its checkpoint holds."""
    groups: dict[tuple[str, str], list[RunSpec]] = {}
    for spec in todo:
        groups.setdefault((spec.algorithm, spec.task), []).append(spec)
    for (algo, task), specs in groups.items():
        first = estimates[specs[0]]
        whole = first.whole or first
        stages = ", ".join(f"{k} {v}" for k, v in whole.stage_steps.items())
        resumed = [spec for spec in specs if estimates[spec].whole is not None]
        left = sum(estimates[spec].total_s for spec in resumed)
        more = f"; {len(resumed)} part-trained, ≈ {_duration(left)} left" if resumed else ""
        print(f"    {algo:8s} {task:30s} {stages:32s} {_duration(whole.total_s):>7s} per run × {len(specs)}{more}")
        for spec in resumed:
            done = {k: v - estimates[spec].stage_steps[k] for k, v in whole.stage_steps.items()}
            at = ", ".join(f"{k} {done[k]}/{v}" for k, v in whole.stage_steps.items())
            print(f"      seed {spec.seed}: at {at} (its checkpoint), ≈ {_duration(estimates[spec].total_s)} left")


def _data_line(rows: dict[str, int], data_source: str) -> str:
    from offrl_zoo.bench.estimate import GENERATION_S_PER_ROW

    unless = " (unless D4RL's files can be downloaded)" if data_source == "auto" else ""
    return (
        f"  data: not cached, generated by each task's first run{unless}: {', '.join(rows)}\n"
        f"        {sum(rows.values()):,} rows at ≈ {GENERATION_S_PER_ROW * 1e6:.0f} s per million "
        "(docs/data.md, 2-core CPU); --dry-run generates nothing"
    )


def _cheaper(
    args: argparse.Namespace, todo: list[RunSpec], wall: float, timings: dict, device: torch.device, jobs: int
) -> tuple[int, float] | None:
    """The largest of ``CHEAPER_CAPS`` below the plan's cap that costs less than ``wall`` and needs no
    confirmation (else the cheapest), with its wall time; priced from the timings already measured
    where the settings match. ``--budget N`` drops the quick budget's presets and values, so it is
    not always cheaper (on the toys it means full batches)."""
    from offrl_zoo.bench.estimate import estimate_sweep
    from offrl_zoo.bench.sweep import plan

    cap = _max_cap(todo)
    best = None
    seeds = seed_range(args.seed, args.seeds)
    for steps in [n for n in CHEAPER_CAPS if cap is None or n < cap]:
        runs = plan(args.algorithms, args.suite, args.tasks, seeds, str(steps), list(args.overrides)).runs
        estimates = estimate_sweep(runs, args.eval_every or steps, args.eval_episodes, device, timings)
        alt_wall = _wall(runs, estimates, jobs, 0.0)[2]
        if alt_wall < (wall if best is None else best[1]):
            best = (steps, alt_wall)
        if best is not None and best[1] <= CONFIRM_ABOVE_S:
            break
    return best


def seeds_batched(flag: bool | None, device: Any) -> bool:
    """``--vectorize-seeds`` / ``--no-vectorize-seeds`` as given; neither: batched on CUDA, one by one on the CPU
    (where one seed's matmuls already fill the thread, benchmarks/speed/README.md)."""
    return device.type == "cuda" if flag is None else flag


def cmd_compare(args: argparse.Namespace) -> int:

    from offrl_zoo.bench import executors
    from offrl_zoo.bench.sweep import data_conflicts, plan, record_sweep, run_status
    from offrl_zoo.errors import StoreDataConflict
    from offrl_zoo.heap import set_up_training_process
    from offrl_zoo.train.loggers import check_available, logger_kinds
    from offrl_zoo.train.run import check_device

    loggers = logger_kinds(args.logger)
    check_available(loggers)  # here, not in each of the runs it would launch
    seeds = seed_range(args.seed, args.seeds)
    sweep = plan(args.algorithms, args.suite, args.tasks, seeds, args.budget, list(args.overrides))
    store = Path(args.out or f"results/{args.suite or 'tasks'}-{sweep.budget}")
    device = check_device(args.device)
    jobs = args.jobs or (1 if device.type == "cuda" else max(1, (os.cpu_count() or 1) // args.threads))
    vectorize = seeds_batched(args.vectorize_seeds, device)
    # Default: evaluate once per capped stage, or every 50 000 steps at the paper budget (DTQL's interval;
    # candidate-based acting makes frequent evaluation the dominant cost on a CPU).
    eval_every = args.eval_every or _max_cap(sweep.runs) or PAPER_EVAL_EVERY
    status = {spec: run_status(spec.run_dir(store)) for spec in sweep.runs}
    todo = [spec for spec in sweep.runs if status[spec] != "done"]
    counts = {s: list(status.values()).count(s) for s in ("done", "partial", "failed", "running", "pending")}
    print(
        f"compare: {len(sweep.algorithms)} algorithm(s) × {len(sweep.tasks)} task(s) × {len(sweep.seeds)} seed(s)"
        f" = {len(sweep.runs)} runs, budget {sweep.budget}{_caps(sweep)}"
        + (f", {_budget_values(sweep)}" if sweep.budget == "quick" else "")
        + f" → {store}"
    )
    for item in sweep.unsupported:
        print(f"  unsupported: {item['algorithm']} on {item['task']}: {item['reason']}")
    print("  runs: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    if vectorize and len(sweep.seeds) > 1:
        why = "the default on cuda; --no-vectorize-seeds" if args.vectorize_seeds is None else "--vectorize-seeds"
        print(f"  seeds: the {len(sweep.seeds)} seeds of each algorithm and task train as one batched model ({why})")
    conflicts = data_conflicts(store, todo, args.data_source)
    if conflicts:
        why = (
            f"{store}'s finished runs trained on other data than a run would load here, so runs trained now "
            f"could not share its report: {'; '.join(conflicts)} (generated data differ between CPU types; or "
            "a real D4RL file was cached since)"
        )
        if not args.dry_run:
            raise StoreDataConflict(f"compare: {why}")
        print(f"  data conflict: {why}; {StoreDataConflict.hint}")
    set_up_training_process(args.threads)
    if todo and not args.no_estimate:
        wall = _print_estimate(args, todo, store, device, jobs, eval_every)
        if wall > CONFIRM_ABOVE_S and not (args.yes or args.dry_run) and not _confirm():
            print("not started; pass --yes to start without asking, or lower --budget/--seeds")
            return 1
    if args.dry_run:
        return 0
    sweep.run_settings = {
        "eval_every": eval_every,
        "eval_episodes": args.eval_episodes,
        "data_source": args.data_source,
    }
    store.mkdir(parents=True, exist_ok=True)
    record_sweep(store, sweep)
    settings = executors.TrainSettings(
        device=args.device,
        threads=args.threads,
        eval_every=eval_every,
        eval_episodes=args.eval_episodes,
        data_source=args.data_source,
        vectorize_seeds=vectorize,
        loggers=loggers,
    )
    results = _train_sweep(args, todo, store, settings, jobs)
    problems = {s: r for s, r in results.items() if r != "done"}
    _print_report(store, None, _references(args))
    if problems:
        print(
            f"{len(problems)} run(s) did not finish: "
            + ", ".join(f"{s.label()} ({r})" for s, r in problems.items())
            + "; re-run the command to retry or resume them",
            file=sys.stderr,
        )
        return 1
    return 0


def _train_sweep(args: argparse.Namespace, todo: list, store: Path, settings: Any, jobs: int) -> dict:
    """Each run of ``todo`` → how it ended; Ctrl-C names the store to resume."""
    from offrl_zoo.bench import executors
    from offrl_zoo.errors import interrupted_as

    stopped = f"the sweep in {store} stopped; its finished runs are kept: re-run the same command to resume the others"
    with interrupted_as(stopped):
        if args.executor == "ray":
            return executors.run_ray(todo, store, settings, args.ray_address)
        return executors.run_local(todo, store, settings, jobs)


def _confirm() -> bool:
    if not sys.stdin.isatty():
        return False
    return input("start it? [y/N] ").strip().lower() in ("y", "yes")


def _print_report(store: Path, out: Path | None, references: Path | bool = True) -> Path:
    from offrl_zoo.bench.render import format_summary, write_report
    from offrl_zoo.bench.report import build_report
    from offrl_zoo.errors import interrupted_as

    folder = out or store / "report"
    with interrupted_as(f"the report in {folder} was not finished; `offrl-zoo report {store}` rebuilds it"):
        report = build_report(store, references=references)
        write_report(report, folder)
    print(format_summary(report))
    print(f"report: {folder / 'report.md'}")
    return folder


def cmd_report(args: argparse.Namespace) -> int:
    from offrl_zoo.errors import ConfigError

    store = Path(args.store)
    if not (store / "runs").is_dir():
        raise ConfigError(f"{store}: not a results store (no runs/ folder)")
    _print_report(store, Path(args.out) if args.out else None, _references(args))
    return 0
