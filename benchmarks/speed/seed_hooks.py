"""What leaving the vmap level of a seed batch costs per call: the project's hooks against PyTorch's public route.

A seed batch (``--vectorize-seeds``) runs each algorithm's own update under ``torch.vmap`` over the stacked
seeds and leaves the vmap level for what vmap cannot do: per-seed random draws, backward and the optimiser
step, the fused Mish and dropout, freezing a module, and the batched ``Linear`` (``offrl_zoo.nets.seed_batch``).
The hooks leave it through private ``torch._C._functorch`` calls. PyTorch's documented way to run code one
level down on the unwrapped tensors is an ``autograd.Function`` with a ``vmap`` staticmethod. This script
measures what swapping one for the other would cost:

1. microseconds per call of an identity that leaves the level and returns its input re-batched: the
   project's hook (``seed_batch.elementwise``), the public ``autograd.Function``, and one plain vmapped op
   for scale;
2. per algorithm and stage, how often one seed-batch update leaves the level, and the update's time, so that
   calls × (public − hook) / update time estimates the slowdown of the public route.

    python benchmarks/speed/seed_hooks.py --seeds 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager

from _results import add_common_args, machine_meta, run_child, write_results
from seeds import make_seed_batch, seed_batch_seconds


def _public_identity():
    import torch

    class LeaveVmap(torch.autograd.Function):
        """Identity whose vmap rule runs one level down (PyTorch's extension point for custom batching)."""

        @staticmethod
        def forward(x):
            return x

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def vmap(info, in_dims, x):
            return x, in_dims[0]

    return LeaveVmap.apply


def per_call_us(args: argparse.Namespace) -> dict:
    import torch

    from offrl_zoo.nets import seed_batch

    public = _public_identity()
    ways = {
        "hook": lambda x: seed_batch.elementwise(lambda t: t, x),
        "autograd.Function vmap": public,
        "plain vmapped op (x + 0)": lambda x: x + 0,
    }
    x = torch.randn(args.seeds, 4)
    out = {}
    for name, fn in ways.items():

        def chain(t, fn=fn):
            for _ in range(args.calls):
                t = fn(t)
            return t

        batched = torch.vmap(chain)
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            batched(x)
            best = min(best, time.perf_counter() - start)
        out[name] = 1e6 * best / args.calls
    return out


@contextmanager
def counting_level_exits(counter: list[int]):
    """Count the calls that leave the vmap level: every ``outside_vmap`` and every batched ``linear``."""
    from offrl_zoo.nets import seed_batch

    outside, linear = seed_batch.outside_vmap, seed_batch.linear

    def counted_outside(n):
        counter[0] += 1
        return outside(n)

    def counted_linear(x, weight, bias):
        counter[0] += seed_batch.is_seed_batched(weight) and seed_batch.is_seed_batched(x)
        return linear(x, weight, bias)

    seed_batch.outside_vmap, seed_batch.linear = counted_outside, counted_linear
    try:
        yield
    finally:
        seed_batch.outside_vmap, seed_batch.linear = outside, linear


def measure(name: str, args: argparse.Namespace) -> dict:
    import torch

    from offrl_zoo import registry
    from offrl_zoo.bench.timing import synthetic_data
    from offrl_zoo.spec import DataSpec

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    data = synthetic_data(spec, 100_000, device)
    cls = registry.get(name)
    batch = make_seed_batch(cls, spec, args.seeds, device)
    stages = []
    for index, stage in enumerate(batch.stages()):
        seconds = seed_batch_seconds(batch, index, data, args.warmup, args.steps)
        counter = [0]
        with counting_level_exits(counter):
            seed_batch_seconds(batch, index, data, 0, args.steps)
        stages.append({"stage": stage.name, "update_ms": 1000 * seconds, "exits_per_update": counter[0] / args.steps})
    return {"algorithm": name, "stages": stages}


def markdown(meta: dict, calls: dict, results: list[dict]) -> str:
    extra = calls["autograd.Function vmap"] - calls["hook"]
    lines = [
        f"# Leaving a seed batch's vmap level, {meta['date']} (cpu, {meta['threads']} thread(s), "
        f"torch {meta['torch']}, git {meta['git_sha']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Per call, µs (best of {meta['repeats']} chains of {meta['calls']} calls, {meta['seeds']} seeds, "
        "a (4,) tensor per seed):",
        "",
        "| way | µs per call |",
        "|---|---:|",
        *(f"| {k} | {v:.1f} |" for k, v in calls.items()),
        "",
        f"Per update of {meta['seeds']} seeds (hopper shapes, official sizes, eager, {meta['steps']} timed updates "
        f"after {meta['warmup']}): level exits, the update's time, and the estimated slowdown of the public route "
        f"(exits × {extra:.1f} µs / update time).",
        "",
        "| algorithm | stage | exits per update | update ms | public route, estimated |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        for s in r["stages"]:
            slowdown = 1 + s["exits_per_update"] * extra / 1000 / s["update_ms"]
            lines.append(
                f"| {r['algorithm']} | {s['stage']} | {s['exits_per_update']:.0f} | {s['update_ms']:.1f} | "
                f"{slowdown:.2f}× |"
            )
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="timed updates per stage")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--calls", type=int, default=200, help="calls per timed chain (part 1)")
    p.add_argument("--repeats", type=int, default=20, help="timed chains (part 1)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return
    import torch

    from offrl_zoo import registry

    torch.set_num_threads(args.threads)
    calls = per_call_us(args)
    print(", ".join(f"{k}: {v:.1f} µs" for k, v in calls.items()), flush=True)
    results = []
    for name in args.algorithms or sorted(registry.available()):
        results.append(run_child(__file__, ["--one", name, *sys.argv[1:]], args.threads, name))
        print(name, results[-1]["stages"], flush=True)
    meta = machine_meta(
        "cpu",
        args.threads,
        seeds=args.seeds,
        calls=args.calls,
        repeats=args.repeats,
        steps=args.steps,
        warmup=args.warmup,
    )
    write_results("seed-hooks", args.tag, meta, [{"per_call_us": calls}, *results], markdown(meta, calls, results))


if __name__ == "__main__":
    main()
