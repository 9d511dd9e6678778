"""Reproduce the DTQL paper's 2-D bandit claims (docs/reference.md §14) and measure them.

For each algorithm × toy task: train (or resume, or reuse a finished run), draw 1 000 actions at the
dummy state, plot them over the data coloured by reward, and compute the §14 numbers. Writes one PNG
per run under --figures and a JSON + Markdown table under --results.

    python benchmarks/toy_claims.py --budget official --tasks toy-25_gaussian-far toy-25_gaussian-hard
    python benchmarks/toy_claims.py --budget quick            # every toy, minutes per run

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


def samples(run_dir: Path, n: int, seed: int) -> np.ndarray:
    algo, _, _ = load_run(run_dir)
    torch.manual_seed(seed)
    return algo.act(torch.zeros(n, 1), deterministic=False).cpu().numpy()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=["dtql", "dtql-kl"])
    parser.add_argument("--tasks", nargs="+", default=TOYS)
    parser.add_argument("--budget", choices=["official", "quick"], default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/toy", help="where the training runs live")
    parser.add_argument("--figures", default="docs/figures/toy")
    parser.add_argument("--results", default="benchmarks/results/toy")
    parser.add_argument("--train", action="store_true", help="train runs that are missing (else skip them)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for algorithm in args.algorithms:
        for task in args.tasks:
            request = RunRequest(
                algorithm=algorithm,
                task=task,
                seed=args.seed,
                eval_every=10**9,
                preset="quick" if args.budget == "quick" else None,
                checkpoint_every=250,
            )
            run_dir = Path(args.runs) / args.budget / algorithm / task / f"seed{args.seed}"
            if not (run_dir / "done").is_file():
                if not args.train:
                    print(f"skip {algorithm} {task}: {run_dir} not finished (pass --train)")
                    continue
                train(request, run_dir=run_dir, progress=False)
            _, distribution, reward = task.split("-")
            actions = samples(run_dir, 1000, args.seed)
            metrics = toy_metrics(actions, distribution, reward)
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text())["algorithm_config"]
            rows.append(
                {
                    "algorithm": algorithm,
                    "task": task,
                    "budget": args.budget,
                    "seed": args.seed,
                    "steps": cfg["steps"],
                    "batch_size": cfg["batch_size"],
                    "run_dir": str(run_dir),
                    **metrics,
                }
            )
            plot(
                Path(args.figures) / f"{args.budget}-{algorithm}-{task}.png",
                actions,
                distribution,
                reward,
                f"{algorithm} on {task} ({args.budget}: {cfg['steps']} steps, batch {cfg['batch_size']})",
            )
            print(json.dumps(rows[-1]))
    out = Path(args.results)
    write_json(out / f"{args.budget}.json", rows)
    header = "| algorithm | task | steps × batch | norm. reward | in-support | modes hit | top-mode share |\n"
    header += "|---|---|---|---|---|---|---|\n"
    lines = [
        f"| {r['algorithm']} | {r['task']} | {r['steps']} × {r['batch_size']} | {r['normalized_reward']:.3f} | "
        f"{r['in_support']:.3f} | {r.get('modes_hit', '–')} | "
        f"{format(r['top_mode_share'], '.3f') if 'top_mode_share' in r else '–'} |"
        for r in rows
    ]
    write_text(out / f"{args.budget}.md", header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
