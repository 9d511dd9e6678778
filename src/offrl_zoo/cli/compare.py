"""``offrl-zoo compare`` (plan → estimate → run → report) and ``offrl-zoo report``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from offrl_zoo.cli.args import add_fast_flag, add_vectorize_flag, positive_int

COMPARE_EXAMPLES = """\
examples:
  offrl-zoo compare dtql dtql-kl iql --suite toy               # quick budget, 3 seeds, minutes on a CPU
  offrl-zoo compare dtql srpo --suite gym-medium --budget paper --device cuda
  offrl-zoo compare dtql iql td3bc --suite gym-medium --budget 20000 --seeds 3
  offrl-zoo compare dtql iql --suite gym --executor ray --ray-address auto --budget paper
  offrl-zoo report results/toy-quick                           # rebuild the report from the store
Re-running the same command skips finished runs and resumes unfinished ones from their checkpoints.
"""
CONFIRM_ABOVE_S = 2 * 3600  # estimated wall time above which compare asks before starting
PAPER_EVAL_EVERY = 50_000


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
    p.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default 3)")
    add_vectorize_flag(p)
    p.add_argument(
        "--budget",
        default="quick",
        help="paper (official steps), quick (capped, CPU-friendly; default) or a step cap per stage",
    )
    p.add_argument("--out", help="results store (default results/<suite>-<budget>)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument(
        "--jobs", type=positive_int, help="local runs side by side (default: CPU cores / threads, 1 on cuda)"
    )
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads per run")
    p.add_argument(
        "--eval-every",
        type=positive_int,
        help="steps between evaluations (default: the capped stage length; paper budget: 50 000)",
    )
    p.add_argument("--eval-episodes", type=positive_int, help="episodes per evaluation (default: the task's)")
    p.add_argument("--data-source", default="auto", choices=["auto", "d4rl", "generated"])
    p.add_argument("--yes", action="store_true", help="start without asking, whatever the estimate")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the estimate, train nothing")
    p.add_argument("--no-estimate", action="store_true", help="skip the warm-up timing")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config values applied to every algorithm")
    add_fast_flag(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="rebuild a comparison report from a results store")
    p.add_argument("store")
    p.add_argument("--out", help="report folder (default STORE/report)")
    p.set_defaults(func=cmd_report)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _budget_values(sweep) -> str:
    presets = sorted({r.algorithm for r in sweep.runs if r.preset})
    values = sorted({f"{k}={v}" for r in sweep.runs for k, v in r.budget_config})
    parts = ([f"the quick preset of {', '.join(presets)}"] if presets else []) + values
    return " + ".join(parts) if parts else "no other changes"


def cmd_compare(args: argparse.Namespace) -> int:
    import torch

    from offrl_zoo.bench import executors
    from offrl_zoo.bench.estimate import estimate_sweep, sweep_compute
    from offrl_zoo.bench.sweep import plan, record_sweep, run_status
    from offrl_zoo.train.run import check_device

    sweep = plan(args.algorithms, args.suite, args.tasks, args.seeds, args.budget, list(args.overrides))
    store = Path(args.out or f"results/{args.suite or 'tasks'}-{sweep.budget}")
    device = check_device(args.device)
    jobs = args.jobs or (1 if device.type == "cuda" else max(1, (os.cpu_count() or 1) // args.threads))
    # Default: evaluate once per capped stage, or every 50 000 steps at the paper budget (DTQL's interval;
    # candidate-based acting makes frequent evaluation the dominant cost on a CPU).
    cap = sweep.runs[0].steps if sweep.runs else None
    eval_every = args.eval_every or cap or PAPER_EVAL_EVERY
    status = {spec: run_status(spec.run_dir(store)) for spec in sweep.runs}
    todo = [spec for spec in sweep.runs if status[spec] != "done"]
    counts = {s: list(status.values()).count(s) for s in ("done", "partial", "failed", "running", "pending")}
    print(
        f"compare: {len(sweep.algorithms)} algorithm(s) × {len(sweep.tasks)} task(s) × {len(sweep.seeds)} seed(s)"
        f" = {len(sweep.runs)} runs, budget {sweep.budget}"
        + (f" (≤ {sweep.runs[0].steps} steps per stage)" if sweep.runs and sweep.runs[0].steps else "")
        + (f", {_budget_values(sweep)}" if sweep.budget == "quick" else "")
        + f" → {store}"
    )
    for item in sweep.unsupported:
        print(f"  unsupported: {item['algorithm']} on {item['task']}: {item['reason']}")
    print("  runs: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    torch.set_num_threads(args.threads)
    if todo and not args.no_estimate:
        estimates = estimate_sweep(todo, eval_every, args.eval_episodes, device)
        print(f"  estimate on this machine ({device}, {args.threads} thread(s) per run, {jobs} job(s)):")
        for (algo, task), est in estimates.items():
            n = sum(1 for s in todo if (s.algorithm, s.task) == (algo, task))
            stages = ", ".join(f"{k} {v}" for k, v in est.stage_steps.items())
            print(f"    {algo:8s} {task:30s} {stages:32s} {_duration(est.total_s):>7s} per run × {n}")
        compute, saved = sweep_compute(todo, estimates)
        wall = compute / min(jobs, len(todo))
        shared = f", after ≈ {_duration(saved)} saved by shared stages" if saved > 0 else ""
        print(
            f"  ≈ {_duration(compute)} of compute{shared}, ≈ {_duration(wall)} wall time "
            "(dataset generation not included)"
        )
        if wall > CONFIRM_ABOVE_S and not (args.yes or args.dry_run) and not _confirm():
            print("not started; pass --yes to start without asking, or lower --budget/--seeds")
            return 1
    if args.dry_run:
        return 0
    store.mkdir(parents=True, exist_ok=True)
    record_sweep(store, sweep)
    settings = executors.TrainSettings(
        device=args.device,
        threads=args.threads,
        eval_every=eval_every,
        eval_episodes=args.eval_episodes,
        data_source=args.data_source,
        vectorize_seeds=args.vectorize_seeds,
    )
    if args.executor == "ray":
        results = executors.run_ray(todo, store, settings, args.ray_address)
    else:
        results = executors.run_local(todo, store, settings, jobs)
    problems = {s: r for s, r in results.items() if r != "done"}
    _print_report(store, None)
    if problems:
        print(
            f"{len(problems)} run(s) did not finish: "
            + ", ".join(f"{s.label()} ({r})" for s, r in problems.items())
            + "; re-run the command to retry or resume them",
            file=sys.stderr,
        )
        return 1
    return 0


def _confirm() -> bool:
    if not sys.stdin.isatty():
        return False
    return input("start it? [y/N] ").strip().lower() in ("y", "yes")


def _print_report(store: Path, out: Path | None) -> Path:
    from offrl_zoo.bench.render import format_summary, write_report
    from offrl_zoo.bench.report import build_report

    report = build_report(store)
    folder = out or store / "report"
    write_report(report, folder)
    print(format_summary(report))
    print(f"report: {folder / 'report.md'}")
    return folder


def cmd_report(args: argparse.Namespace) -> int:
    from offrl_zoo.errors import ConfigError

    store = Path(args.store)
    if not (store / "runs").is_dir():
        raise ConfigError(f"{store}: not a results store (no runs/ folder)")
    _print_report(store, Path(args.out) if args.out else None)
    return 0
