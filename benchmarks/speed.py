"""Training and acting speed of registered algorithms at a task's shapes, with the official sizes.

For each algorithm and stage: seconds per 1 000 gradient updates (batches drawn from a TorchRL replay
buffer over 100 000 synthetic transitions, as in training), after a warm-up; then action latency for
one observation and for a batch of 16. Writes JSON and Markdown under benchmarks/results/.

    python benchmarks/speed.py --algorithms bc td3bc iql --obs-dim 11 --action-dim 3 --threads 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
from pathlib import Path

import torch

from offrl_zoo import registry
from offrl_zoo.bench.timing import seconds_per_update, synthetic_data
from offrl_zoo.spec import DataSpec
from offrl_zoo.train.cost import seconds_per_act

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithms", nargs="*", default=None, help="default: every registered algorithm")
    p.add_argument("--obs-dim", type=int, default=11)  # hopper
    p.add_argument("--action-dim", type=int, default=3)
    p.add_argument("--steps", type=int, default=1000, help="timed updates per stage")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="", help="suffix of the result file names")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    data = synthetic_data(spec, 100_000, device)
    rows = []
    for name in args.algorithms or sorted(registry.available()):
        cls = registry.get(name)
        torch.manual_seed(0)
        algo = cls(spec, cls.Config(), device)
        for stage in algo.stages():
            ms = 1000.0 * seconds_per_update(stage, data, args.warmup, args.steps, device)
            rows.append({"algorithm": name, "stage": stage.name, "batch_size": stage.batch_size,
                         "s_per_1000_updates": round(ms, 3), "updates_per_s": round(1000.0 / ms, 1)})
            print(f"{name:8s} {stage.name:10s} {ms:8.3f} s / 1000 updates  ({1000 / ms:7.1f} updates/s)")
        act1, act16 = (1000.0 * seconds_per_act(algo, b, warmup=10, repeats=200) for b in (1, 16))
        rows.append({"algorithm": name, "stage": "act", "act_ms_1": round(act1, 3), "act_ms_16": round(act16, 3)})
        print(f"{name:8s} act        {act1:8.3f} ms (1 obs)   {act16:8.3f} ms (16 obs)")

    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                      text=True).stdout.strip():
        sha += "-dirty"
    meta = {"date": dt.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "cpu_count": __import__("os").cpu_count(), "device": str(device), "threads": args.threads,
            "torch": torch.__version__, "git_sha": sha, "obs_dim": args.obs_dim, "action_dim": args.action_dim,
            "timed_steps": args.steps, "warmup": args.warmup,
            "command": "python benchmarks/speed.py " + " ".join(__import__("sys").argv[1:])}
    RESULTS.mkdir(exist_ok=True)
    stem = f"{meta['date']}-speed-{device.type}{'-' + args.tag if args.tag else ''}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Speed, {meta['date']} ({device.type}, {args.threads} thread(s), torch {meta['torch']}, "
             f"git {sha})", "", f"Command: `{meta['command']}`; shapes obs={args.obs_dim}, action={args.action_dim}; "
             f"{args.steps} timed updates after {args.warmup} warm-up; official batch and network sizes.", "",
             "| algorithm | stage | batch | s / 1000 updates | updates/s | act 1 obs (ms) | act 16 obs (ms) |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["stage"] == "act":
            lines.append(f"| {row['algorithm']} | act | | | | {row['act_ms_1']} | {row['act_ms_16']} |")
        else:
            lines.append(f"| {row['algorithm']} | {row['stage']} | {row['batch_size']} | "
                         f"{row['s_per_1000_updates']} | {row['updates_per_s']} | | |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / stem}.json/.md")


if __name__ == "__main__":
    main()
