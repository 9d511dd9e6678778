"""What ``cpu_bf16_matmul`` buys on this CPU: every algorithm's fast path, float32 against bfloat16 matmuls,
A/B in one process.

For each algorithm (a fresh subprocess each), its fast-path update of every stage and its ``act`` are
compiled once; then blocks alternate between full float32 matmuls and bfloat16 ones (PyTorch's CPU matmul
precision, ``torch.backends.mkldnn.matmul.fp32_precision``, the setting ``cpu_bf16_matmul=true`` makes)
in ABBA order, so both see the same load; medians over blocks. The compiled code calls ATen's matmuls,
which read the setting at each call, so the two sides run the same compiled graph. Needs a CPU with
bfloat16 matrix units (AMX or AVX512-BF16).

    python benchmarks/speed/cpu_bf16.py --blocks 8 --block-steps 50
"""

from __future__ import annotations

import argparse
import json
import sys

from _results import ab_blocks, add_ab_args, add_common_args, machine_meta, run_child, write_results

PRECISIONS = ("ieee", "bf16")


def set_precision(precision: str) -> None:
    import torch

    torch.backends.mkldnn.matmul.fp32_precision = precision


def measure(name: str, args: argparse.Namespace) -> dict:
    import torch

    from offrl_zoo import registry
    from offrl_zoo.algorithm import cpu_has_bf16_matmul
    from offrl_zoo.bench.timing import synthetic_data
    from offrl_zoo.data.buffer import make_replay_buffer, training_step
    from offrl_zoo.spec import DataSpec

    if not cpu_has_bf16_matmul():
        raise SystemExit("this CPU has no bfloat16 matrix units (AMX or AVX512-BF16): nothing to compare")
    torch.set_num_threads(args.threads)
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    data = synthetic_data(spec, 100_000)
    cls = registry.get(name)
    torch.manual_seed(0)
    algo = cls(spec, cls.Config(fast=True, draw="buffer", cpu_bf16_matmul=True), "cpu")
    rows = []
    for stage in algo.stages():
        rb = make_replay_buffer(data, stage.batch_size, stage.sampling, torch.Generator().manual_seed(0))
        step_fn = training_step(algo, stage, data, rb, 0, algo.batch_draw(stage))
        counter = iter(range(10**9))
        for precision in PRECISIONS:  # compilation, then a few steps under each setting
            torch.backends.mkldnn.matmul.fp32_precision = precision
            for _ in range(args.warmup):
                step_fn(next(counter))
        step = lambda f=step_fn, c=counter: f(next(c))  # noqa: E731
        ms, _ = ab_blocks(dict.fromkeys(PRECISIONS, step), set_precision, args.blocks, args.block_steps)
        rows.append({"what": f"{stage.name} (batch {stage.batch_size})", "unit": "s/1000", **ms})
    obs = torch.zeros(1, spec.obs_dim)
    for _ in range(3):
        algo.act(obs)
    with torch.random.fork_rng(devices=[]):
        ms, _ = ab_blocks(dict.fromkeys(PRECISIONS, lambda: algo.act(obs)), set_precision, args.blocks, args.act_calls)
    rows.append({"what": "act, 1 obs", "unit": "ms", **ms})
    return {"algorithm": name, "rows": rows}


def markdown(meta: dict, results: list[dict]) -> str:
    lines = [
        f"# bfloat16 CPU matmuls, fast path, {meta['date']} ({meta['machine']}, {meta['threads']} thread(s), "
        f"torch {meta['torch']}, git {meta['git_sha']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Shapes obs={meta['obs_dim']}, action={meta['action_dim']}; official batch and network sizes; each "
        "algorithm's fast path (`fast=true`) compiled once, then float32 and bfloat16 matmuls (`cpu_bf16_matmul`) "
        f"alternating in {meta['blocks']} blocks (ABBA) of {meta['block_steps']} updates or "
        f"{meta['act_calls']} act calls; medians over blocks.",
        "",
        "| algorithm | what | unit | float32 | bfloat16 | float32 / bfloat16 |",
        "|---|---|---|---:|---:|---:|",
    ]
    for result in results:
        for row in result["rows"]:
            lines.append(  # seconds per call: × 1 000 is both ms per call and s per 1 000 updates
                f"| {result['algorithm']} | {row['what']} | {row['unit']} | {1000 * row['ieee']:.2f} | "
                f"{1000 * row['bf16']:.2f} | {row['ieee'] / row['bf16']:.2f}× |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    add_ab_args(p, "untimed updates under each precision first")
    p.add_argument("--act-calls", type=int, default=20)
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return

    from offrl_zoo import registry

    results = []
    for name in args.algorithms or sorted(registry.available()):
        result = run_child(__file__, ["--one", name, *sys.argv[1:]], args.threads, name)
        results.append(result)
        print(name, ", ".join(f"{r['what']} {r['ieee'] / r['bf16']:.2f}×" for r in result["rows"]), flush=True)
    meta = machine_meta(
        "cpu",
        args.threads,
        obs_dim=args.obs_dim,
        action_dim=args.action_dim,
        blocks=args.blocks,
        block_steps=args.block_steps,
        act_calls=args.act_calls,
    )
    write_results("cpu-bf16", args.tag, meta, results, markdown(meta, results))


if __name__ == "__main__":
    main()
