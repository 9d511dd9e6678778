"""Reproduce the DTQL paper's 2-D bandit claims (docs/reference.md §14) and measure them.

For each algorithm × toy task: train (or resume, or reuse a finished run), draw 1 000 actions at the
dummy state, plot them over the data coloured by reward, and compute the §14 numbers. Writes one PNG
per run under --figures and a JSON + Markdown table under --results.

    python benchmarks/toy_claims.py --budget official --tasks toy-25_gaussian-far toy-25_gaussian-hard
    python benchmarks/toy_claims.py --budget quick            # every toy, minutes per run
    python benchmarks/toy_claims.py --budget official --seeds 0 1 2 --train --tasks toy-25_gaussian-far

``official`` = the official toy script's settings (full batch of 10 000 for 3 500 steps, DTQL-KL
2 000/2 500 steps on far/hard as run_toy.sh); ``quick`` = the `quick` preset (minibatches of 1 000,
1 500 steps).

The runs' own evaluations measure the same way (sampled actions, ``toy_metrics`` in each record's
``samples``), on other draws: the evaluator seeds with seed + 100, this script with the seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from offrl_zoo.envs.toy import toy_data, toy_metrics  # noqa: E402
from offrl_zoo.io import write_json, write_text  # noqa: E402
from offrl_zoo.train.run import RunRequest, load_run, train  # noqa: E402

TOYS = [
    "toy-25_gaussian-far",
    "toy-25_gaussian-near",
    "toy-25_gaussian-hard",
    "toy-swiss_roll_2D-far",
    "toy-swiss_roll_2D-near",
]


def samples(run_dir: Path, n: int, seed: int) -> tuple[np.ndarray, dict]:
    """``n`` sampled actions at the dummy state, and the final policy there: a tanh-Gaussian's pre-tanh mean
    and std (DTQL), else the samples' mean and std (DTQL-KL's implicit generator has no density)."""
    algo, _, _ = load_run(run_dir)
    torch.manual_seed(seed)
    actions = algo.act(torch.zeros(n, 1), deterministic=False).cpu().numpy()
    actor = getattr(algo, "actor", None)
    if hasattr(actor, "mean_std"):
        with torch.no_grad():
            mu, std = actor.mean_std(torch.zeros(1, 1))
        policy = {"kind": "tanh-gaussian at s=0", "mean": mu[0].tolist(), "std": std[0].tolist()}
    else:
        policy = {"kind": "sample moments", "mean": actions.mean(0).tolist(), "std": actions.std(0).tolist()}
    return actions, policy


def plot(path: Path, actions: np.ndarray, distribution: str, reward: str, title: str) -> None:
    data = toy_data(distribution, reward)
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(data["actions"][:, 0], data["actions"][:, 1], c=data["rewards"], s=3, cmap="viridis")
    fig.colorbar(points, ax=ax, label="reward")
    ax.scatter(actions[:, 0], actions[:, 1], c="red", s=4, alpha=0.5, label="policy samples")
    ax.set(title=title, xlabel="action 1", ylabel="action 2", aspect="equal")
    ax.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def measure(args: argparse.Namespace, algorithm: str, task: str, seed: int) -> dict | None:
    """Train (or reuse) one run and measure it; None when it is missing and --train was not given."""
    request = RunRequest(
        algorithm=algorithm,
        task=task,
        seed=seed,
        eval_every=10**9,
        preset="quick" if args.budget == "quick" else None,
        checkpoint_every=250,
        overrides=list(args.overrides),
    )
    run_dir = Path(args.runs) / args.budget / algorithm / task / f"seed{seed}"
    if not (run_dir / "done").is_file():
        if not args.train:
            print(f"skip {algorithm} {task} seed {seed}: {run_dir} not finished (pass --train)")
            return None
        train(request, run_dir=run_dir, progress=False)
    _, distribution, reward = task.split("-")
    actions, policy = samples(run_dir, 1000, seed)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg = config["algorithm_config"]
    provenance = json.loads((run_dir / "provenance.json").read_text())
    figure = f"{args.budget}-{algorithm}-{task}" + ("" if seed == 0 else f"-seed{seed}")
    plot(
        Path(args.figures) / f"{figure}.png",
        actions,
        distribution,
        reward,
        f"{algorithm} on {task}, seed {seed} ({args.budget}: {cfg['steps']} steps, batch {cfg['batch_size']})",
    )
    return {
        "algorithm": algorithm,
        "task": task,
        "budget": args.budget,
        "seed": seed,
        "steps": cfg["steps"],
        "batch_size": cfg["batch_size"],
        "run_dir": str(Path("RUNS") / run_dir.relative_to(args.runs)),  # RUNS = --runs, machine-local
        "overrides": config["request"]["overrides"],
        "code_version": provenance.get("git_sha"),
        "policy": policy,
        **toy_metrics(actions, distribution, reward),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=["dtql", "dtql-kl"])
    parser.add_argument("--tasks", nargs="+", default=TOYS)
    parser.add_argument("--budget", choices=["official", "quick"], default="quick")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="one run per seed (official script: 1 far, 2 hard)"
    )
    parser.add_argument("--runs", default="runs/toy", help="where the training runs live")
    parser.add_argument("--figures", default="docs/figures/toy")
    parser.add_argument("--results", default="benchmarks/results/toy")
    parser.add_argument("--train", action="store_true", help="train runs that are missing (else skip them)")
    parser.add_argument(
        "overrides", nargs="*", help="config overrides for runs trained here, e.g. fast=true (same results, compiled)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for algorithm in args.algorithms:
        for task in args.tasks:
            for seed in args.seeds:
                row = measure(args, algorithm, task, seed)
                if row is not None:
                    rows.append(row)
                    print(json.dumps(row))
    write_tables(Path(args.results) / args.budget, rows)


COLUMNS = (
    "| algorithm | task | seed | steps × batch | norm. reward | in-support | modes hit | top-mode share "
    "| policy at s=0 |"
)


def write_tables(stem: Path, rows: list[dict]) -> None:
    """Merge ``rows`` into STEM.json (a row per algorithm, task and seed: runs measured in other sessions
    stay) and write STEM.md from it."""
    path = stem.with_suffix(".json")
    merged = {
        (r["algorithm"], r["task"], r.get("seed", 0)): r
        for r in (json.loads(path.read_text()) if path.is_file() else [])
    }
    merged |= {(r["algorithm"], r["task"], r["seed"]): r for r in rows}
    table = [merged[k] for k in sorted(merged)]
    write_json(path, table)
    lines = [COLUMNS, "|---" * COLUMNS.count(" | ") + "|---|"] + [_row(r) for r in table]
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")


def _row(r: dict) -> str:
    share = format(r["top_mode_share"], ".3f") if "top_mode_share" in r else "–"
    policy = _policy_text(r["policy"]) if "policy" in r else "–"
    return (
        f"| {r['algorithm']} | {r['task']} | {r.get('seed', 0)} | {r['steps']} × {r['batch_size']} | "
        f"{r['normalized_reward']:.3f} | {r['in_support']:.3f} | {r.get('modes_hit', '–')} | {share} | {policy} |"
    )


def _policy_text(policy: dict) -> str:
    pair = ", ".join(f"{m:.2f} ± {s:.2f}" for m, s in zip(policy["mean"], policy["std"], strict=True))
    return f"{policy['kind']}: ({pair})"


if __name__ == "__main__":
    main()
