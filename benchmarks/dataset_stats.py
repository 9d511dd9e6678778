"""Episode-return statistics of the generated locomotion datasets beside D4RL's published ones.

    python benchmarks/dataset_stats.py [--tasks hopper-medium-v2 ...] [--out benchmarks/results/datasets.md]

Reads the cached generated files (``offrl-zoo data make TASK`` first); the published numbers and their
source are in ``benchmarks/d4rl_published_stats.json``. Both use the same convention: an episode ends at
a terminal or timeout, the trailing cut episode is left out, returns are undiscounted, std has ddof 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from offrl_zoo.data.generated import generated_path
from offrl_zoo.data.inspect import describe_file
from offrl_zoo.envs import get_task

PUBLISHED = Path(__file__).parent / "d4rl_published_stats.json"


def main() -> None:
    published = json.loads(PUBLISHED.read_text())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", default=list(published["datasets"]))
    parser.add_argument("--out", help="also write the Markdown table and a JSON file next to it")
    args = parser.parse_args()
    lines = [
        "| dataset | source | rows | episodes | return mean ± std | min | max | normalised mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    measured = {}
    for task_id in args.tasks:
        task = get_task(task_id)
        ref = published["datasets"].get(task_id)
        if ref:
            norm = task.normalized_score([ref["return_mean"]])[0]
            lines.append(
                f"| {task_id} | D4RL (published) | ≥ {ref['samples_in_complete_episodes']:,} | "
                f"{ref['episodes_at_least']:,}–{ref['episodes_below'] - 1:,} | {ref['return_mean']:.0f} ± "
                f"{ref['return_std']:.0f} | {ref['return_min']:.0f} | {ref['return_max']:.0f} | {norm:.1f} |")
        path = generated_path(task_id)
        if not path.is_file():
            lines.append(f"| {task_id} | generated | not generated yet | | | | | |")
            continue
        info = describe_file(path)
        measured[task_id] = info
        r = info["return"]
        norm = task.normalized_score([r["mean"]])[0]
        lines.append(
            f"| {task_id} | offrl-zoo generated | {info['transitions']:,} | {info['episodes']:,} | "
            f"{r['mean']:.0f} ± {r['std']:.0f} | {r['min']:.0f} | {r['max']:.0f} | {norm:.1f} |")
    table = "\n".join(lines)
    print(table)
    print(f"\nD4RL numbers: {published['source']}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + f"\n\nD4RL numbers: {published['source']} Convention: {published['convention']}.\n")
        out.with_suffix(".json").write_text(json.dumps(measured, indent=2) + "\n")


if __name__ == "__main__":
    main()
