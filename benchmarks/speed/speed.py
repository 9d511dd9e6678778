"""Training and acting speed of every registered algorithm, eager and fast path, at a task's shapes.

For each algorithm and each path (``eager``: the reference; ``fast``: ``fast=true``, i.e. graph-safe
optimiser steps and each whole update compiled as one graph), in a fresh subprocess so that peak memory
and compile caches are its own: seconds per 1 000 gradient updates of each stage (batches drawn from a
TorchRL replay buffer over 100 000 synthetic transitions, as in training, after a warm-up that includes
compilation, or drawn by the update itself where config ``draw`` says so, e.g. ``--draw graph``), the cost of
drawing one batch from the buffer, action latency for 1 and 16 observations, network
evaluations per action and peak memory. Official batch and network sizes. Writes JSON and Markdown under
benchmarks/results/speed/.

    python benchmarks/speed/speed.py --obs-dim 11 --action-dim 3 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _results import add_common_args, machine_meta, run_child, write_results


def measure(name: str, path: str, args: argparse.Namespace) -> dict:
    """One algorithm on one path, in this process."""
    import torch

    from offrl_zoo import registry
    from offrl_zoo.bench.timing import seconds_per_update, synthetic_data
    from offrl_zoo.data.buffer import make_replay_buffer
    from offrl_zoo.heap import set_up_training_process
    from offrl_zoo.spec import DataSpec
    from offrl_zoo.train.cost import network_evaluations_per_action, peak_memory, seconds_per_act, sync

    device = torch.device(args.device)
    set_up_training_process(args.threads)  # threads and the kept heap, as offrl-zoo train runs
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    data = synthetic_data(spec, 100_000, device)
    cls = registry.get(name)
    torch.manual_seed(0)
    # the eager reference always samples the buffer, so its sampling share stays a share of its step
    cfg = cls.Config(
        fast=path == "fast",
        draw=args.draw if path == "fast" else "buffer",
        tf32=args.tf32,
        cpu_bf16_matmul=args.cpu_bf16,
    )
    algo = cls(spec, cfg, device)
    stages = []
    for stage in algo.stages():
        started = time.perf_counter()
        update_s = seconds_per_update(stage, data, args.warmup, args.steps, device, algo)
        warmup_s = time.perf_counter() - started - update_s * args.steps
        rb = make_replay_buffer(data, stage.batch_size, stage.sampling, torch.Generator(device=device).manual_seed(1))
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            rb.sample()
        sync(device)
        sample_s = (time.perf_counter() - t0) / args.steps
        stages.append(
            {
                "stage": stage.name,
                "batch_size": stage.batch_size,
                "draw": algo.batch_draw(stage),
                "s_per_1000": 1000 * update_s,
                "sample_ms": 1000 * sample_s,
                "warmup_s": warmup_s,
            }
        )
    started = time.perf_counter()
    for b in (1, 16):  # first calls: compilation on the fast path
        algo.act(torch.zeros(b, spec.obs_dim, device=device))
    sync(device)
    act = {"act_first_calls_s": time.perf_counter() - started}
    act |= {f"act_ms_{b}": 1000 * seconds_per_act(algo, b, warmup=10, repeats=args.act_repeats) for b in (1, 16)}
    if path == "eager":  # forward hooks count evaluations; compiled code would not call them
        act["nfe_per_action"] = network_evaluations_per_action(algo)
    return {"algorithm": name, "path": path, "stages": stages, **act, **peak_memory()}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--paths", nargs="*", default=["eager", "fast"], choices=["eager", "fast"])
    p.add_argument("--steps", type=int, default=300, help="timed updates per stage")
    p.add_argument("--warmup", type=int, default=30, help="untimed updates first (compilation happens here)")
    p.add_argument("--act-repeats", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--draw", default="auto", choices=["auto", "buffer", "graph"], help="who draws the batches (config draw)"
    )
    p.add_argument("--tf32", action="store_true", help="config tf32=true (CUDA float32 matmuls in TF32)")
    p.add_argument(
        "--cpu-bf16", action="store_true", help="config cpu_bf16_matmul=true (CPU float32 matmuls in bfloat16)"
    )
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _f(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown(meta: dict, results: list[dict]) -> str:
    by = {(r["algorithm"], r["path"]): r for r in results}
    names = sorted({r["algorithm"] for r in results})
    lines = [
        f"# Speed, {meta['date']} ({meta['device']}, {meta['threads']} thread(s), torch {meta['torch']}, "
        f"git {meta['git_sha']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Shapes obs={meta['obs_dim']}, action={meta['action_dim']}; {meta['timed_steps']} timed updates per "
        f"stage after {meta['warmup']} warm-up updates; official batch and network sizes. `eager` is the "
        "reference path, `fast` is `fast=true` (graph-safe optimiser steps, each whole update compiled as one "
        "graph, act compiled)"
        f"{'; both with tf32=true (CUDA float32 matmuls in TF32)' if meta.get('tf32') else ''}"
        f"{'; both with cpu_bf16_matmul=true (CPU float32 matmuls in bfloat16)' if meta.get('cpu_bf16') else ''}"
        ". No official "
        "implementation ran in this process: comparisons with one are made side by side, in one process "
        "(benchmarks/speed/README.md).",
        "",
        "| algorithm | stage | batch | eager s/1k | fast s/1k | eager/fast | fast batches drawn by "
        "| sampling, % of eager step | compile + warm-up (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        eager, fast = by.get((name, "eager")), by.get((name, "fast"))
        base = eager or fast
        for i, stage in enumerate(base["stages"]):
            e = eager["stages"][i] if eager else None
            f = fast["stages"][i] if fast else None
            ratio = e["s_per_1000"] / f["s_per_1000"] if e and f else None
            share = 100 * e["sample_ms"] / e["s_per_1000"] if e else None
            drawn = f.get("draw", "buffer") if f else ""  # results from before draw= have no such key
            lines.append(
                f"| {name} | {stage['stage']} | {stage['batch_size']} | {_f(e and e['s_per_1000'])} | "
                f"{_f(f and f['s_per_1000'])} | {_f(ratio, 2)} | {drawn} | {_f(share)} | "
                f"{_f(f and f['warmup_s'])} |"
            )
    lines += [
        "",
        "| algorithm | act 1 obs eager (ms) | fast (ms) | act 16 obs eager (ms) | fast (ms) "
        "| NFE / action | peak RSS eager (MB) | fast (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        eager, fast = by.get((name, "eager")), by.get((name, "fast"))
        lines.append(
            f"| {name} | {_f(eager and eager['act_ms_1'], 2)} | {_f(fast and fast['act_ms_1'], 2)} | "
            f"{_f(eager and eager['act_ms_16'], 2)} | {_f(fast and fast['act_ms_16'], 2)} | "
            f"{eager.get('nfe_per_action', '') if eager else ''} | "
            f"{_f(eager and eager['peak_rss_mb'], 0)} | {_f(fast and fast['peak_rss_mb'], 0)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse()
    if args.one:
        print(json.dumps(measure(args.one, args.path, args)))
        return

    from offrl_zoo import registry

    results = []
    for name in args.algorithms or sorted(registry.available()):
        for path in args.paths:
            child = ["--one", name, "--path", path, *sys.argv[1:]]
            result = run_child(__file__, child, args.threads, f"{name} ({path})")
            results.append(result)
            stages = ", ".join(f"{s['stage']} {s['s_per_1000']:.1f}" for s in result["stages"])
            print(
                f"{name:8s} {path:5s} s/1000: {stages}; act {result['act_ms_1']:.2f} / {result['act_ms_16']:.2f} ms",
                flush=True,
            )
    meta = machine_meta(
        args.device,
        args.threads,
        obs_dim=args.obs_dim,
        action_dim=args.action_dim,
        timed_steps=args.steps,
        warmup=args.warmup,
        tf32=args.tf32,
        cpu_bf16=args.cpu_bf16,
    )
    write_results("speed", args.tag, meta, results, markdown(meta, results))


if __name__ == "__main__":
    main()
