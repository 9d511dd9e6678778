"""The ``offrl-zoo`` command line: list, config, train, eval, export, data, compare, report, reference."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any, cast

from offrl_zoo.cli.args import (
    add_data_source_flag,
    add_device_flag,
    add_eval_action_flags,
    add_fast_flag,
    add_vectorize_flag,
    episode_count,
    positive_int,
    seed_count,
    seed_int,
    seed_range,
    thread_count,
)
from offrl_zoo.cli.boundary import Parser, guarded, usage_error
from offrl_zoo.cli.compare import add_compare_parsers, add_logger_flag
from offrl_zoo.cli.data import add_data_parser
from offrl_zoo.cli.reference import add_reference_parser

if TYPE_CHECKING:
    from offrl_zoo.algorithm import Algorithm
    from offrl_zoo.train.evaluator import Evaluator

EXAMPLES = """\
examples:
  offrl-zoo list tasks
  offrl-zoo config iql --task hopper-medium-v2          # resolved config, each value's origin
  offrl-zoo train td3bc --task toy-25_gaussian-far --steps 3000
  offrl-zoo train iql --task hopper-medium-v2 --preset corl actor_lr=1e-4
  offrl-zoo train bc --dataset my_data.hdf5 --env Hopper-v5
  offrl-zoo eval runs/td3bc/toy-25_gaussian-far/seed0
  offrl-zoo export runs/td3bc/toy-25_gaussian-far/seed0 --format torchscript   # then eval --policy FILE
  offrl-zoo data make hopper-medium-v2                  # see `offrl-zoo data --help`
  offrl-zoo compare dtql dtql-kl iql --suite toy        # see `offrl-zoo compare --help`
"""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("algorithm", help="algorithm name (see `offrl-zoo list algorithms`)")
    p.add_argument("--task", help="registered task id (see `offrl-zoo list tasks`)")
    p.add_argument("--dataset", help="D4RL-layout HDF5 file or minari:DATASET_ID (overrides the task's data)")
    p.add_argument("--env", help="Gymnasium env id that evaluates an unregistered --dataset")
    p.add_argument("--preset", help="named preset of the algorithm, e.g. iql's `corl`")
    p.add_argument("--config", dest="config_file", help="YAML file of algorithm config values")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="algorithm config values, applied last")
    add_fast_flag(p)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="offrl-zoo",
        description="Offline RL zoo: train, evaluate and compare offline RL algorithms.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list algorithms, tasks or an algorithm's presets")
    p.add_argument("what", nargs="?", default="algorithms", choices=["algorithms", "tasks", "suites", "presets"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("config", help="print an algorithm's resolved config for a task, with value origins")
    _add_config_args(p)
    p.set_defaults(func=cmd_config)

    p = sub.add_parser(
        "train",
        help="train one algorithm on one task (resumes an interrupted run)",
        description="Train ALGO on a task or dataset. Re-running the same command resumes an interrupted run "
        "from its checkpoint and does nothing for a finished one.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_args(p)
    p.add_argument("--seed", type=seed_int, default=0, help="the run's seed (the first one with --seeds)")
    p.add_argument(
        "--seeds",
        type=seed_count,
        default=1,
        help="train seeds SEED..SEED+N-1, one after another (each as its own run)",
    )
    add_vectorize_flag(p)
    p.add_argument("--steps", type=positive_int, help="cap every training stage at this many gradient steps (recorded)")
    add_device_flag(p)
    p.add_argument("--out", default="runs", help="results root; the run goes to OUT/ALGO/TASK/seedN")
    p.add_argument("--run-dir", help="exact run directory (overrides --out)")
    p.add_argument("--eval-every", type=positive_int, default=5000, help="gradient steps between evaluations")
    p.add_argument("--eval-episodes", type=episode_count, help="episodes per evaluation (default: the task's)")
    add_eval_action_flags(p, "--stochastic-eval", "--deterministic-eval", "default: the task's, sampled on the toys")
    p.add_argument("--log-every", type=positive_int, default=1000, help="steps per metrics.jsonl line")
    p.add_argument("--checkpoint-every", type=positive_int, default=10_000)
    p.add_argument(
        "--stage-cache",
        default=None,
        metavar="DIR",
        help="reuse finished shared stages (e.g. DTQL's pretraining) from DIR and add new ones to it",
    )
    p.add_argument(
        "--transitions",
        default="qlearning",
        choices=["qlearning", "next_observations"],
        help="how HDF5 rows become transitions: D4RL's qlearning_dataset, or stored next_observations",
    )
    p.add_argument("--offline", action="store_true", help="never download datasets")
    add_data_source_flag(p)
    p.add_argument(
        "--threads", type=thread_count, default=1, help="torch CPU threads (default 1: small MLPs gain little)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_logger_flag(p)
    p.add_argument("--logger-group", metavar="NAME", help="W&B group of the runs (compare: the store's name)")
    p.set_defaults(func=cmd_train)

    add_data_parser(sub)
    add_compare_parsers(sub)
    add_reference_parser(sub)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint, or a policy exported from it, again")
    p.add_argument("run_dir", nargs="?", help="a run directory (or give --policy)")
    p.add_argument("--policy", metavar="FILE", help="a policy file written by `offrl-zoo export`, instead of a run")
    p.add_argument(
        "--env",
        metavar="TASK_OR_ENV",
        help="with --policy: a registered task id (normalised scores) or a Gymnasium env id (raw returns); "
        "default: the policy's task",
    )
    p.add_argument("--episodes", type=episode_count, help="episodes (default: the run's protocol)")
    p.add_argument("--seed", type=seed_int, help="first episode seed (default: the run's)")
    add_device_flag(p)
    add_eval_action_flags(
        p, "--stochastic", "--deterministic", "default: the run's, else the task's; with --policy, the exported rule"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="with a run: evaluate its weights under another action-selection rule, e.g. candidates=1 or "
        "selection=resample (the algorithm's acting keys only; an unknown one is refused with the list)",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "export",
        help="write a run's policy as one TorchScript or ONNX file that runs without offrl-zoo",
        description="Write the run's action selection (observation normalisation, the algorithm's rule, the clip "
        "to the action box) as one file taking raw observations (B, obs_dim) float32 and returning actions "
        "(B, action_dim), and a JSON sidecar FILE.json describing it.",
    )
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, choices=["torchscript", "onnx"], help="torch.jit.load or ONNX Runtime")
    p.add_argument("--out", metavar="FILE", help="default: RUN/policy.pt or RUN/policy.onnx")
    p.add_argument(
        "--stochastic", action="store_true", help="the sampling rule, act(deterministic=False) (default: deterministic)"
    )
    p.set_defaults(func=cmd_export)
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    from offrl_zoo import registry
    from offrl_zoo.config import presets
    from offrl_zoo.envs import all_suites, all_tasks
    from offrl_zoo.errors import PluginError

    if args.what == "suites":
        for name, tasks in all_suites().items():
            print(f"{name:12s} {len(tasks):2d} tasks: {', '.join(tasks)}")
        return 0
    if args.what == "tasks":
        for task in all_tasks().values():
            ref = "no reference" if task.ref_min is None else f"ref {task.ref_min:g}..{task.ref_max:g}"
            print(f"{task.id:32s} {task.source:6s} env={task.env_id:24s} horizon={task.horizon:<5d} {ref}")
        return 0
    for name, origin in sorted(registry.available().items()):
        try:
            cls = registry.get(name)
        except PluginError as err:  # one broken plugin hides nothing else
            print(f"{name:10s} {origin.split(':')[0]:8s} unavailable: {err}")
            continue
        extra = f"  presets: {', '.join(presets(cls))}" if args.what == "presets" else ""
        print(f"{name:10s} {origin.split(':')[0]:8s} {cls.summary}{extra}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from offrl_zoo import registry
    from offrl_zoo.config import resolve
    from offrl_zoo.train.run import RunRequest

    task = RunRequest(args.algorithm, args.task, args.dataset, args.env).resolve_task()
    resolved = resolve(registry.get(args.algorithm), task.id, args.preset, args.config_file, args.overrides)
    print(f"# {args.algorithm} on {task.id}" + (f" with preset {args.preset}" if args.preset else ""))
    for key, value in resolved.to_dict().items():
        line = yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip().strip("{}")
        origin = resolved.sources.get(key, "default (official implementation)")
        print(f"{line:45s} # {origin}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from offrl_zoo.errors import interrupted_as, sigint_remembered

    what = f"{args.algorithm} on {args.task or args.dataset}"
    with (
        sigint_remembered(),
        interrupted_as(f"{what} had not started and nothing was kept; re-run the same command to start it"),
    ):
        return _train_runs(args)  # a run that had started names itself


def _train_runs(args: argparse.Namespace) -> int:
    import dataclasses

    from offrl_zoo.errors import FlagError, interrupted_as
    from offrl_zoo.heap import set_up_training_process
    from offrl_zoo.train.loggers import LoggerSettings, check_available, logger_kinds
    from offrl_zoo.train.run import RunRequest, train
    from offrl_zoo.train.run_seeds import train_seed_batch

    set_up_training_process(args.threads)
    request = RunRequest(
        algorithm=args.algorithm,
        task=args.task,
        dataset=args.dataset,
        env=args.env,
        preset=args.preset,
        config_file=args.config_file,
        overrides=list(args.overrides),
        seed=args.seed,
        device=args.device,
        steps=args.steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        deterministic_eval=args.deterministic,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        transitions=args.transitions,
        download=not args.offline,
        data_source=args.data_source,
    )
    requests = [dataclasses.replace(request, seed=seed) for seed in seed_range(args.seed, args.seeds)]
    if args.run_dir and (len(requests) > 1 or args.vectorize_seeds):
        raise FlagError(
            "--run-dir names one run; with --seeds or --vectorize-seeds use --out (runs go to OUT/ALGO/TASK/seedN)"
        )
    progress = not args.no_progress
    loggers = LoggerSettings(logger_kinds(args.logger), args.logger_group)
    check_available(loggers.kinds)  # before any data is loaded
    if args.vectorize_seeds:
        seeds = f"seeds {args.seed}..{requests[-1].seed}"
        stopped = f"{seeds} of {args.algorithm} under {args.out} stopped; re-run the same command"
        with interrupted_as(f"{stopped} to resume them"):
            run_dirs = train_seed_batch(
                requests, out=args.out, progress=progress, stage_cache=args.stage_cache, loggers=loggers
            )
    else:
        run_dirs = [
            train(
                r, out=args.out, run_dir=args.run_dir, progress=progress, stage_cache=args.stage_cache, loggers=loggers
            )
            for r in requests
        ]
    for run_dir in run_dirs:
        summary = json.loads((run_dir / "done").read_text())
        final = summary.get("final_eval") or {}
        score = f"score {final['score_mean']:.1f} ± {final['score_std']:.1f}" if "score_mean" in final else ""
        ret = f"return {final['return_mean']:.2f} ± {final['return_std']:.2f}" if final else "no evaluation"
        print(f"{run_dir}: {ret} {score} ({summary.get('elapsed_s')} s of training)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from offrl_zoo.train.evaluator import Evaluator, eval_deterministic
    from offrl_zoo.train.run import load_run

    if (args.run_dir is None) == (args.policy is None):
        both = args.run_dir is not None
        raise usage_error("offrl-zoo eval", f"give a run directory or --policy FILE{', not both' if both else ''}")
    if args.policy is not None:
        if args.overrides:
            raise usage_error("offrl-zoo eval", "KEY=VALUE acting settings go with a run, not an exported policy")
        return _eval_policy(args)
    if args.env is not None:
        raise usage_error("offrl-zoo eval", "--env goes with --policy: a run is evaluated on its own task")
    algo, task, record = load_run(args.run_dir, args.device)
    acting = _acting_overrides(algo, args.overrides)
    request = record["request"]
    evaluator = Evaluator(
        task,
        args.episodes or request.get("eval_episodes") or task.eval_episodes,
        seed=args.seed if args.seed is not None else request["seed"] + 100,
        deterministic=eval_deterministic(
            args.deterministic, request.get("deterministic_eval"), task.deterministic_eval
        ),
    )
    return _print_evaluation(evaluator, algo, **({"acting_overrides": acting} if acting else {}))


def _acting_overrides(algo: Algorithm, items: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` acting settings to the loaded algorithm's config (validated as any config is)."""
    from offrl_zoo.config import parse_override
    from offrl_zoo.errors import ConfigError

    values: dict[str, Any] = {}
    for item in items:
        values.update(parse_override(item))
    allowed = type(algo).acting_keys
    for key in values:
        if key not in allowed:
            listed = ", ".join(allowed) if allowed else "none: its act has no choice to make"
            raise ConfigError(f"offrl-zoo eval {key}=…: not an acting key of {algo.name} (acting keys: {listed})")
    try:
        algo.cfg = dataclasses.replace(algo.cfg, **values)
    except ValueError as err:  # the config's own check of the value
        raise ConfigError(f"offrl-zoo eval: {err}") from None
    return values


def _eval_policy(args: argparse.Namespace) -> int:
    """``eval --policy FILE``: the run's protocol (episodes, seeds) from the policy's sidecar, its selection
    rule as exported."""
    from offrl_zoo.export import ExportedPolicy, policy_task, read_sidecar
    from offrl_zoo.train.evaluator import Evaluator

    if args.device != "cpu":
        raise usage_error("offrl-zoo eval", f"--device {args.device}: an exported policy runs on the CPU")
    sidecar = read_sidecar(args.policy)
    seed = args.seed if args.seed is not None else (sidecar.get("run_seed") or 0) + 100
    policy = ExportedPolicy(args.policy, seed=seed)
    if args.deterministic is not None and args.deterministic != policy.deterministic:
        flag, rule = ("--deterministic", "stochastic") if args.deterministic else ("--stochastic", "deterministic")
        raise usage_error("offrl-zoo eval", f"{flag}: {args.policy} holds the {rule} rule (see `offrl-zoo export`)")
    task = policy_task(sidecar, args.env)
    episodes = args.episodes or sidecar.get("eval_episodes") or task.eval_episodes
    evaluator = Evaluator(task, episodes, seed=seed, deterministic=policy.deterministic)
    # Evaluator needs act, selection_rule and obs_loc of an Algorithm, which ExportedPolicy provides.
    return _print_evaluation(evaluator, cast("Algorithm", policy), policy=str(args.policy))


def _print_evaluation(evaluator: Evaluator, actor: Algorithm, **extra: object) -> int:
    """Run ``evaluator`` on ``actor`` and print the result (episode lists left out) with its protocol."""
    result = evaluator(actor)
    evaluator.close()
    out = {k: v for k, v in result.items() if k not in ("returns", "lengths")} | extra
    out["protocol"] = evaluator.protocol(actor)
    print(json.dumps(out, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from offrl_zoo.export import export_run, sidecar_path

    path, sidecar = export_run(args.run_dir, args.format, args.out, args.stochastic)
    draws = "draws random numbers" if sidecar["draws_random_numbers"] else "draws no random numbers"
    print(f"{path}: {sidecar['algorithm']} policy, {args.format}; {sidecar['selection_rule']}; {draws}")
    print(f"{sidecar_path(path)}: what the file holds")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure, expected or not, ends in the error boundary (cli/boundary.py)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return guarded(argv, lambda: _run(argv))


def _run(argv: list[str]) -> int:
    args, extra = build_parser().parse_known_args(argv)
    _gather_overrides(args, extra)
    return args.func(args)


def _gather_overrides(args: argparse.Namespace, extra: list[str]) -> None:
    """Every key=value item into ``args.overrides``: argparse leaves those after options in ``extra`` (it
    does not intermix positionals), and the nargs="+" lists (algorithms, --tasks) swallow those after them."""
    stray = [x for x in extra if x.startswith("-") or "=" not in x or not hasattr(args, "overrides")]
    if stray:
        raise usage_error(f"offrl-zoo {args.command}", f"unrecognized arguments: {' '.join(stray)}")
    for name in ("algorithms", "tasks"):
        items = getattr(args, name, None)
        if items:
            setattr(args, name, [x for x in items if "=" not in x])
            extra = [x for x in items if "=" in x] + extra
    if extra:
        args.overrides = list(args.overrides) + extra
    if getattr(args, "fast", False):
        args.overrides = list(args.overrides) + ["fast=true"]
