"""Episode-return statistics of the generated locomotion datasets beside D4RL's published ones.

    python benchmarks/dataset_stats.py [--tasks hopper-medium-v2 ...] [--out benchmarks/results/datasets.md]
                                       [--v5-references]

Reads the cached generated files (``offrl-zoo data make TASK`` first); the published numbers and their
source are in ``benchmarks/d4rl_published_stats.json``. Both use the same convention: an episode ends at
a terminal or timeout, the trailing cut episode is left out, returns are undiscounted, std has ddof 0.
``--v5-references`` records the random and expert returns measured here in
``src/offrl_zoo/envs/v5_references.json``, next to D4RL's reference constants.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from offrl_zoo.data.generation.datasets import generated_path, parse_task
from offrl_zoo.data.inspect import describe_file
from offrl_zoo.envs import get_task
from offrl_zoo.envs.tasks import V5_REFERENCES
from offrl_zoo.io import write_json

PUBLISHED = Path(__file__).parent / "d4rl_published_stats.json"


def main() -> None:
    published = json.loads(PUBLISHED.read_text())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", default=list(published["datasets"]))
    parser.add_argument("--out", help="also write the Markdown table and a JSON file next to it")
    parser.add_argument(
        "--v5-references",
        action="store_true",
        help="record the generated random and expert returns as the tasks' v5 references",
    )
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
                f"{ref['return_std']:.0f} | {ref['return_min']:.0f} | {ref['return_max']:.0f} | {norm:.1f} |"
            )
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
            f"{r['mean']:.0f} ± {r['std']:.0f} | {r['min']:.0f} | {r['max']:.0f} | {norm:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    print(f"\nD4RL numbers: {published['source']}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + f"\n\nD4RL numbers: {published['source']} Convention: {published['convention']}.\n")
        out.with_suffix(".json").write_text(json.dumps(measured, indent=2) + "\n")
    if args.v5_references:
        record_v5_references(measured)


def record_v5_references(measured: dict) -> None:
    """Write the random and expert datasets' complete-episode returns into the package's v5 references."""
    refs = json.loads(V5_REFERENCES.read_text())
    for task_id, info in measured.items():
        domain, kind = parse_task(task_id)
        if kind in ("random", "expert"):
            r = info["return"]
            refs.setdefault(domain, {})[kind] = {
                "return_mean": round(r["mean"], 2),
                "return_std": round(r["std"], 2),
                "episodes": info["episodes"],
                "dataset_sha256": info["sha256"],
            }
    write_json(V5_REFERENCES, refs)
    print(f"wrote {V5_REFERENCES}")


if __name__ == "__main__":
    main()
