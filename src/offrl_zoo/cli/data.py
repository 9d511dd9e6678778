"""``offrl-zoo data``: behaviour-policy training, dataset generation, listing, inspection, import and checks."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from offrl_zoo.cli.args import episode_count, positive_int, seed_int, thread_count

DATA_EXAMPLES = """\
examples:
  offrl-zoo data list                                   # tasks, where their data comes from, what is cached
  offrl-zoo data make hopper-medium-v2                  # generate (once) from the shipped policy
  offrl-zoo data info hopper-medium-v2                  # sizes, episode returns, SHA-256
  offrl-zoo data verify my_data.hdf5 --env Hopper-v5    # full check of a user's file
  offrl-zoo data import ~/hopper_medium-v2.hdf5 --task hopper-medium-v2   # a real D4RL file, offline
  offrl-zoo data train-behaviour Hopper-v5 --out behaviour/Hopper-v5     # SAC; re-run to resume
"""


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="datasets: generate, list, inspect, import, verify; train behaviour policies",
        epilog=DATA_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cache-dir", help="data cache root (default $OFFRL_ZOO_CACHE or ~/.cache/offrl-zoo)")
    p.set_defaults(func=run_data)
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    q = dsub.add_parser("list", help="D4RL-style tasks, their data source and what is cached")
    q.set_defaults(data_func=cmd_list)

    q = dsub.add_parser("make", help="generate a D4RL-style dataset from the shipped behaviour policies")
    q.add_argument("tasks", nargs="+", metavar="TASK", help="e.g. hopper-medium-v2 (or 'all')")
    q.add_argument("--seed", type=seed_int, default=0)
    q.add_argument("--size", type=positive_int, help="transitions (default: D4RL's size for the task)")
    q.add_argument("--force", action="store_true", help="generate again even if a valid cached file exists")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(data_func=cmd_make)

    q = dsub.add_parser(
        "info",
        help="sizes, episode returns and SHA-256 of a file, a minari:ID or a task's cached data",
        description="Counts (the same in info, verify and train): rows in the file; transitions training makes "
        "of them (qlearning rule for HDF5 files: the last row and every timeout row dropped; every step for "
        "Minari); episodes, a last one cut by the file's end included; complete episodes, which end in a "
        "terminal or timeout, and their returns.",
    )
    q.add_argument("target", metavar="PATH|minari:ID|TASK")
    q.set_defaults(data_func=cmd_info)

    q = dsub.add_parser("verify", help="load a D4RL-layout HDF5 or minari:ID exactly as training would")
    q.add_argument("target", metavar="PATH|minari:ID|TASK")
    q.add_argument("--env", help="Gymnasium env whose observation/action widths the data must match")
    q.set_defaults(data_func=cmd_verify)

    q = dsub.add_parser("import", help="check a D4RL-layout HDF5 and copy it into the cache")
    q.add_argument("path")
    q.add_argument("--task", help="store it as this D4RL task's real file (e.g. a manually downloaded D4RL file)")
    q.set_defaults(data_func=cmd_import)

    q = dsub.add_parser("train-behaviour", help="train a SAC behaviour policy (resumes from its checkpoint)")
    q.add_argument("env_id", metavar="ENV", help="Hopper-v5, HalfCheetah-v5 or Walker2d-v5 (any Box env works)")
    q.add_argument("--out", help="run directory (default behaviour/ENV/seedN)")
    q.add_argument("--seed", type=seed_int, default=0)
    q.add_argument("--steps", type=positive_int, default=1_000_000, help="total env steps (one update per step)")
    q.add_argument("--snapshot-every", type=positive_int, default=10_000)
    q.add_argument("--eval-episodes", type=episode_count, default=10)
    q.add_argument("--threads", type=thread_count, default=1)
    q.add_argument("--no-progress", action="store_true")
    q.add_argument("overrides", nargs="*", metavar="key=value", help="SAC settings, e.g. start_steps=10000")
    q.set_defaults(data_func=cmd_train_behaviour)

    q = dsub.add_parser("export-policies", help="pick medium/expert/replay snapshots of a SAC run for shipping")
    q.add_argument("run_dir")
    q.add_argument("domain", choices=["hopper", "halfcheetah", "walker2d"])
    q.add_argument("--dest", help="policy root (default: the package's); use it with $OFFRL_ZOO_POLICIES")
    q.add_argument(
        "--roles",
        nargs="+",
        default=["medium", "replay", "expert"],
        choices=["medium", "replay", "expert"],
        help="which snapshots to (re)write, e.g. medium replay now and expert after 1 M steps",
    )
    q.add_argument(
        "--recheck-episodes",
        type=episode_count,
        default=50,
        help="episodes to re-evaluate the snapshots near the medium range with before choosing (50)",
    )
    q.set_defaults(data_func=cmd_export)


def run_data(args: argparse.Namespace) -> int:
    if args.cache_dir:
        os.environ["OFFRL_ZOO_CACHE"] = str(Path(args.cache_dir).expanduser())
    return args.data_func(args)


def _gym_tasks():
    from offrl_zoo.data.generation.datasets import can_generate
    from offrl_zoo.envs import all_tasks

    return [t for t in all_tasks().values() if t.source == "d4rl" and can_generate(t.source_id)]


def cmd_list(args: argparse.Namespace) -> int:
    from offrl_zoo.data.generation.datasets import generated_path, parse_task, policies_for
    from offrl_zoo.data.sources import cache_dir
    from offrl_zoo.errors import DatasetError

    print(f"cache: {cache_dir()}")
    print(f"{'task':28s} {'real D4RL file':16s} {'generated':11s} shipped policy")
    for task in _gym_tasks():
        real = (cache_dir() / "d4rl" / f"{task.source_id}.hdf5").is_file()
        made = generated_path(task.source_id).is_file()
        try:
            have = "yes" if policies_for(*parse_task(task.source_id)) else "n/a (uniform)"
        except DatasetError:
            have = "missing"
        print(f"{task.id:28s} {'cached' if real else '-':16s} {'cached' if made else '-':11s} {have}")
    _list_minari_tasks()
    return 0


def _list_minari_tasks() -> None:
    """The AntMaze/pen/kitchen tasks, whose data is their Minari successor: is it on disk?"""
    from offrl_zoo.envs import all_tasks

    tasks = [t for t in all_tasks().values() if t.source == "minari"]
    try:
        import minari

        local = set(minari.list_local_datasets())
    except Exception:  # minari missing or its root unreadable: report nothing as local
        local = set()
    print(f"\n{'task':28s} {'Minari dataset':32s} local")
    for task in tasks:
        dataset_id = task.source_id.removeprefix("minari:")
        status = "yes" if dataset_id in local else f"-  (minari download {dataset_id})"
        print(f"{task.id:28s} {dataset_id:32s} {status}")


def cmd_make(args: argparse.Namespace) -> int:
    from offrl_zoo.data.generation.datasets import KINDS, ensure_generated
    from offrl_zoo.envs.tasks import D4RL_LOCOMOTION

    tasks = args.tasks
    if tasks == ["all"]:
        tasks = [f"{d}-{k}-v2" for d in D4RL_LOCOMOTION for k in KINDS]
    for task_id in tasks:
        print(
            ensure_generated(task_id, seed=args.seed, size=args.size, progress=not args.no_progress, force=args.force)
        )
    return 0


def _resolve_target(target: str) -> Path:
    from offrl_zoo.data.generation.datasets import can_generate, generated_path
    from offrl_zoo.data.sources import cache_dir
    from offrl_zoo.errors import DatasetError

    path = Path(target).expanduser()
    if path.is_file():
        return path
    if can_generate(target) or target.endswith("-v2"):
        for candidate in (cache_dir() / "d4rl" / f"{target}.hdf5", generated_path(target)):
            if candidate.is_file():
                return candidate
        raise DatasetError(f"{target}: nothing cached (run `offrl-zoo data make {target}`)")
    raise DatasetError(f"{target}: no such file or known task")


def cmd_info(args: argparse.Namespace) -> int:
    from offrl_zoo.data.inspect import describe_file, describe_minari

    if args.target.startswith("minari:"):
        print(json.dumps(describe_minari(args.target.removeprefix("minari:")), indent=2))
        return 0
    path = _resolve_target(args.target)
    info = describe_file(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        info["generated_by"] = json.loads(sidecar.read_text()).get("generated_by")
    print(json.dumps(info, indent=2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from offrl_zoo.data import loading, sources
    from offrl_zoo.data.inspect import describe_file, describe_minari, summary_line
    from offrl_zoo.envs import get_task

    minari_id = args.target.removeprefix("minari:") if args.target.startswith("minari:") else None
    if minari_id is not None:
        dataset = sources.load_minari(minari_id)
        stats = describe_minari(minari_id)
    else:
        path = _resolve_target(args.target)
        dataset = sources.load_d4rl_file(path, path.stem, "qlearning", 1000, source="file")
        stats = describe_file(path)
    env_id = args.env
    if env_id is None and minari_id is None and not Path(args.target).is_file():
        env_id = get_task(args.target).env_id
    if env_id is not None or minari_id is not None:  # a Minari dataset is checked against the env it records
        dataset = loading.match_env(dataset, loading.custom_task(args.target, env_id))
    p = dataset.provenance
    matched = env_id or (minari_id and stats["env"])
    print(
        f"ok: {p.path or p.dataset_id}: {summary_line(stats)}, "
        f"obs {dataset.spec.obs_dim}, action {dataset.spec.action_dim}"
        + (f", matches {matched}" if matched else "")
        + f", sha256 {p.sha256}"
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from offrl_zoo.data import loading, sources
    from offrl_zoo.envs import get_task

    src = Path(args.path).expanduser()
    dataset = sources.load_d4rl_file(src, src.stem, "qlearning", 1000, source="file")  # refuses a bad file
    if args.task:
        task = get_task(args.task)
        loading.match_env(dataset, task)
        dest = sources.d4rl_cache_path(task.source_id)
    else:
        dest = sources.cache_dir() / "imported" / src.name
    from offrl_zoo.io import atomic_path

    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    sources.pin_file(dest, str(src.resolve()))
    print(f"imported {src} → {dest} (sha256 {dataset.provenance.sha256}, {len(dataset):,} transitions)")
    return 0


def cmd_train_behaviour(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from offrl_zoo.data.generation.online import BehaviourRun, train_behaviour
    from offrl_zoo.data.generation.sac import SACConfig
    from offrl_zoo.heap import set_up_training_process

    set_up_training_process(args.threads)
    from offrl_zoo.errors import ConfigError

    try:
        cfg = OmegaConf.merge(OmegaConf.structured(SACConfig), OmegaConf.from_dotlist(args.overrides))
        sac = SACConfig(**OmegaConf.to_container(cfg))  # type: ignore[arg-type]
    except Exception as err:  # OmegaConf's errors name the key; ValueError from SACConfig the value
        raise ConfigError(f"SAC settings {args.overrides}: {err}".splitlines()[0]) from err
    out = Path(args.out or f"behaviour/{args.env_id}/seed{args.seed}")
    run = BehaviourRun(
        args.env_id,
        out,
        seed=args.seed,
        total_steps=args.steps,
        snapshot_every=args.snapshot_every,
        eval_episodes=args.eval_episodes,
    )
    train_behaviour(run, sac, progress=not args.no_progress)
    print(f"{out}: done; snapshots in {out / 'snapshots.jsonl'}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from offrl_zoo.data.generation.shipped import export_policies

    chosen = export_policies(
        Path(args.run_dir),
        args.domain,
        Path(args.dest) if args.dest else None,
        roles=tuple(args.roles),
        recheck_episodes=args.recheck_episodes,
    )
    for name, (step, ret) in chosen.items():
        print(f"{args.domain}/{name}: step {step}, stochastic return {ret:.1f}")
    return 0
