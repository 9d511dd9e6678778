"""Cost of N seeds trained as one batched model (``--vectorize-seeds``) against one seed alone.

For each algorithm and stage, at a task's shapes with the official batch and network sizes: seconds per
1 000 updates of one seed on the eager path, of that seed as a ``SeedBatch`` of one (the cost of the
vmapped update itself), and of N seeds as one ``SeedBatch`` (N batches drawn from
N TorchRL buffers, one vmapped update). ``ratio`` = batched N seeds / one seed; training the seeds one
after another costs N×. Each algorithm runs in a fresh subprocess.

    python benchmarks/speed/seeds.py --seeds 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _results import machine_meta, write_results


def measure(name: str, args: argparse.Namespace) -> dict:
    import torch

    from offrl_zoo import registry
    from offrl_zoo.bench.timing import seconds_per_update, synthetic_data
    from offrl_zoo.data.buffer import make_replay_buffer
    from offrl_zoo.spec import DataSpec
    from offrl_zoo.train.cost import sync
    from offrl_zoo.train.seed_batch_model import SeedBatch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    data = synthetic_data(spec, 100_000, device)
    cls = registry.get(name)

    def seed_batch(n: int) -> SeedBatch:
        algos = []
        for seed in range(n):
            torch.manual_seed(seed)
            algos.append(cls(spec, cls.Config(), device))
        return SeedBatch(algos, [torch.Generator(device).manual_seed(s) for s in range(n)])

    def batched_seconds(batch: SeedBatch, index: int) -> float:
        stage = batch.stages()[index]
        buffers = [
            make_replay_buffer(data, stage.batch_size, stage.sampling, torch.Generator(device=device).manual_seed(s))
            for s in range(batch.n)
        ]
        for step in range(args.warmup):
            batch.update(stage, torch.stack([rb.sample() for rb in buffers]), step)
        sync(device)
        start = time.perf_counter()
        for step in range(args.warmup, args.warmup + args.steps):
            batch.update(stage, torch.stack([rb.sample() for rb in buffers]), step)
        sync(device)
        return (time.perf_counter() - start) / args.steps

    torch.manual_seed(0)
    alone = cls(spec, cls.Config(), device)
    single, many = seed_batch(1), seed_batch(args.seeds)
    stages = []
    for index, stage in enumerate(alone.stages()):
        one = seconds_per_update(stage, data, args.warmup, args.steps, device)
        one_batched, n_batched = batched_seconds(single, index), batched_seconds(many, index)
        stages.append(
            {
                "stage": stage.name,
                "batch_size": stage.batch_size,
                "one_s_per_1000": 1000 * one,
                "one_batched_s_per_1000": 1000 * one_batched,
                "batched_s_per_1000": 1000 * n_batched,
                "ratio": n_batched / one,
            }
        )
    return {"algorithm": name, "seeds": args.seeds, "stages": stages}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithms", nargs="*", default=None, help="default: every registered algorithm")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--obs-dim", type=int, default=11)  # hopper
    p.add_argument("--action-dim", type=int, default=3)
    p.add_argument("--steps", type=int, default=100, help="timed updates per stage")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="")
    p.add_argument("--one", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def markdown(meta: dict, results: list[dict]) -> str:
    n = meta["seeds"]
    lines = [
        f"# {n} seeds as one batched model, {meta['date']} ({meta['device']}, {meta['threads']} thread(s), "
        f"torch {meta['torch']}, git {meta['git_sha']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Shapes obs={meta['obs_dim']}, action={meta['action_dim']}; {meta['timed_steps']} timed updates per "
        f"stage after {meta['warmup']} warm-up updates; official batch and network sizes; eager path. "
        f"`ratio` = {n} batched seeds / 1 seed (one after another would be {n}.0).",
        "",
        f"| algorithm | stage | batch | 1 seed s/1k | 1 seed as a batch of 1 s/1k | {n} seeds batched s/1k | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for s in r["stages"]:
            lines.append(
                f"| {r['algorithm']} | {s['stage']} | {s['batch_size']} | {s['one_s_per_1000']:.1f} | "
                f"{s['one_batched_s_per_1000']:.1f} | {s['batched_s_per_1000']:.1f} | {s['ratio']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return
    from offrl_zoo import registry

    results = []
    for name in args.algorithms or sorted(registry.available()):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, *sys.argv[1:]], capture_output=True, text=True, env=env
        )
        if out.returncode != 0:
            raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(
            name,
            ", ".join(
                f"{s['stage']} {s['one_s_per_1000']:.1f} → {s['batched_s_per_1000']:.1f} ({s['ratio']:.2f}×)"
                for s in results[-1]["stages"]
            ),
            flush=True,
        )
    meta = machine_meta(
        args.device,
        args.threads,
        seeds=args.seeds,
        obs_dim=args.obs_dim,
        action_dim=args.action_dim,
        timed_steps=args.steps,
        warmup=args.warmup,
    )
    write_results(f"seeds{args.seeds}", args.tag, meta, results, markdown(meta, results))


if __name__ == "__main__":
    main()
