"""Cost of N seeds trained as one batched model (``--vectorize-seeds``) against one seed alone.

For each algorithm and stage, at a task's shapes with the official batch and network sizes: seconds per
1 000 updates of one seed on the eager path, of that seed as a ``SeedBatch`` of one (the cost of the
vmapped update itself), and of N seeds as one ``SeedBatch`` (N batches drawn from
N TorchRL buffers, one vmapped update). ``ratio`` = batched N seeds / one seed; training the seeds one
after another costs N×. Each algorithm runs in a fresh subprocess.

``act``: milliseconds per evaluation env step, ``--eval-envs`` observations per seed, deterministic
actions: one seed's ``act`` against the N seeds' one batched ``SeedBatch.act`` (what a seed batch's
evaluation calls once per env step instead of N per-seed calls).

    python benchmarks/speed/seeds.py --seeds 5 --threads 1
    python benchmarks/speed/seeds.py --seeds 5 --threads 1 --parts act
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from _results import add_common_args, machine_meta, run_child, write_results


def make_seed_batch(cls, spec, n: int, device, fast: bool = False):
    """Seeds 0..n-1 of ``cls`` (default config, ``fast`` as given) as one ``SeedBatch``, each with its own
    generator."""
    import torch

    from offrl_zoo.train.seed_batch_model import SeedBatch

    algos = []
    for seed in range(n):
        torch.manual_seed(seed)
        algos.append(cls(spec, cls.Config(fast=fast), device))
    return SeedBatch(algos, [torch.Generator(device).manual_seed(s) for s in range(n)])


def seed_batch_seconds(batch, index: int, data, warmup: int, steps: int) -> float:
    """Seconds per update of stage ``index`` for the whole seed batch, each seed drawing from its own buffer."""
    import torch

    from offrl_zoo.data.buffer import make_replay_buffer
    from offrl_zoo.train.cost import sync

    stage, device = batch.stages()[index], data.device
    buffers = [
        make_replay_buffer(data, stage.batch_size, stage.sampling, torch.Generator(device=device).manual_seed(s))
        for s in range(batch.n)
    ]
    for step in range(warmup):
        batch.update(stage, torch.stack([rb.sample() for rb in buffers]), step)
    sync(device)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        batch.update(stage, torch.stack([rb.sample() for rb in buffers]), step)
    sync(device)
    return (time.perf_counter() - start) / steps


def measure(name: str, args: argparse.Namespace) -> dict:
    import torch

    from offrl_zoo import registry
    from offrl_zoo.bench.timing import seconds_per_update, synthetic_data
    from offrl_zoo.spec import DataSpec
    from offrl_zoo.train.cost import sync

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    data = synthetic_data(spec, 100_000, device)
    cls = registry.get(name)

    def act_ms(act: Callable[[], object]) -> float:
        for _ in range(args.warmup):
            act()
        sync(device)
        start = time.perf_counter()
        for _ in range(args.act_calls):
            act()
        sync(device)
        return 1000 * (time.perf_counter() - start) / args.act_calls

    torch.manual_seed(0)
    alone = cls(spec, cls.Config(fast=args.fast), device)
    single = make_seed_batch(cls, spec, 1, device, args.fast)
    many = make_seed_batch(cls, spec, args.seeds, device, args.fast)
    result: dict = {"algorithm": name, "seeds": args.seeds, "stages": []}
    if "act" in args.parts:
        obs = torch.randn(args.seeds, args.eval_envs, args.obs_dim, device=device)
        streams = [torch.Generator(device).manual_seed(s) for s in range(args.seeds)]
        one = act_ms(lambda: alone.act(obs[0], deterministic=True))
        batched = act_ms(lambda: many.act(obs, True, streams))
        result["act"] = {"one_ms": one, "batched_ms": batched, "ratio": batched / one}
    if "updates" not in args.parts:
        return result
    for index, stage in enumerate(alone.stages()):
        # the lone run's own step: eager, or with --fast compiled (and captured on CUDA) as the trainer runs it
        one = seconds_per_update(stage, data, args.warmup, args.steps, device, alone if args.fast else None)
        one_batched, n_batched = (
            seed_batch_seconds(single, index, data, args.warmup, args.steps),
            seed_batch_seconds(many, index, data, args.warmup, args.steps),
        )
        result["stages"].append(
            {
                "stage": stage.name,
                "batch_size": stage.batch_size,
                "one_s_per_1000": 1000 * one,
                "one_batched_s_per_1000": 1000 * one_batched,
                "batched_s_per_1000": 1000 * n_batched,
                "ratio": n_batched / one,
            }
        )
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=100, help="timed updates per stage")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--parts", nargs="+", choices=["updates", "act"], default=["updates", "act"])
    p.add_argument("--eval-envs", type=int, default=10, help="observations per seed in each act call")
    p.add_argument("--act-calls", type=int, default=50, help="timed act calls")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--fast",
        action="store_true",
        help="config fast=true: the lone seed compiled (captured on CUDA), the seed batch one graph per step "
        "variant (captured on CUDA, not compiled); --warmup must then exceed the capture's 3 real steps",
    )
    p.add_argument("--one", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _path(meta: dict) -> str:
    if not meta.get("fast"):
        return "eager path"
    captured = ", captured" if meta["device"].startswith("cuda") else ""
    return f"fast path (one seed compiled{captured}; the seed batch one graph per step variant{captured})"


def markdown(meta: dict, results: list[dict]) -> str:
    n = meta["seeds"]
    lines = [
        f"# {n} seeds as one batched model, {meta['date']} ({meta['device']}, {meta['threads']} thread(s), "
        f"torch {meta['torch']}, git {meta['git_sha']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Shapes obs={meta['obs_dim']}, action={meta['action_dim']}; official batch and network sizes; "
        f"{_path(meta)}; {meta['warmup']} warm-up calls. `ratio` = {n} batched seeds / 1 seed (one after another "
        f"would be {n}.0).",
        "",
    ]
    if any("act" in r for r in results):
        lines += [
            f"Evaluation `act`, ms per env step ({meta['eval_envs']} observations per seed, deterministic, "
            f"{meta['act_calls']} timed calls): one seed alone, and {n} seeds in one batched call "
            f"(one per seed would be {n}× the first column).",
            "",
            f"| algorithm | 1 seed ms | {n} seeds batched ms | ratio |",
            "|---|---|---|---|",
            *(
                f"| {r['algorithm']} | {r['act']['one_ms']:.2f} | {r['act']['batched_ms']:.2f} | "
                f"{r['act']['ratio']:.2f} |"
                for r in results
                if "act" in r
            ),
            "",
        ]
    if any(r["stages"] for r in results):
        lines += [
            f"Updates, seconds per 1 000 ({meta['timed_steps']} timed per stage):",
            "",
            "| algorithm | stage | batch | 1 seed s/1k | 1 seed as a batch of 1 s/1k "
            f"| {n} seeds batched s/1k | ratio |",
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
        results.append(run_child(__file__, ["--one", name, *sys.argv[1:]], args.threads, name))
        r = results[-1]
        parts = [
            f"{s['stage']} {s['one_s_per_1000']:.1f} → {s['batched_s_per_1000']:.1f} ({s['ratio']:.2f}×)"
            for s in r["stages"]
        ]
        if "act" in r:
            parts.append(f"act {r['act']['one_ms']:.2f} → {r['act']['batched_ms']:.2f} ms ({r['act']['ratio']:.2f}×)")
        print(name, ", ".join(parts), flush=True)
    meta = machine_meta(
        args.device,
        args.threads,
        seeds=args.seeds,
        obs_dim=args.obs_dim,
        action_dim=args.action_dim,
        timed_steps=args.steps,
        warmup=args.warmup,
        parts=args.parts,
        eval_envs=args.eval_envs,
        act_calls=args.act_calls,
        fast=args.fast,
    )
    kind = f"seeds{args.seeds}" + ("" if args.parts == ["updates", "act"] else "-" + "-".join(args.parts))
    kind += "-fast" if args.fast else ""
    write_results(kind, args.tag, meta, results, markdown(meta, results))


if __name__ == "__main__":
    main()
