"""What drawing a training batch costs, by who draws it (config ``draw``): the TorchRL buffer's ``sample()``, the
same plus the copy into a captured graph's static inputs (what a captured step with ``draw=buffer`` does
before each replay), and ``UniformDraw`` called eagerly (inside a compiled or captured step its host cost is
gone). A small dataset isolates the host's Python cost (its gather is negligible); a large one adds the gather.
Best of ``--repeats`` blocks of ``--calls`` calls.

    python benchmarks/speed/draw_cost.py --threads 1
"""

from __future__ import annotations

import argparse
import time

from _results import add_common_args, machine_meta, write_results


def best_us(fn, calls: int, repeats: int) -> float:
    for _ in range(calls // 5):
        fn()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        blocks.append((time.perf_counter() - start) / calls)
    return 1e6 * min(blocks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[1024, 1_000_000])
    p.add_argument("--batch-size", type=int, default=256)
    add_common_args(p, algorithms=False)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import torch

    from offrl_zoo.bench.timing import synthetic_data
    from offrl_zoo.data.buffer import UniformDraw, make_replay_buffer
    from offrl_zoo.spec import DataSpec
    from offrl_zoo.train.cost import sync

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    results = []
    for rows in args.rows:
        data = synthetic_data(spec, rows, device)
        rb = make_replay_buffer(data, args.batch_size, "uniform", torch.Generator(device=device).manual_seed(0))
        draw, static = UniformDraw(data, args.batch_size), data[: args.batch_size].clone()

        def synced(fn):
            return lambda: (fn(), sync(device))

        ways = {
            "buffer_sample_us": rb.sample,
            "buffer_sample_and_copy_us": lambda rb=rb, static=static: static.update_(rb.sample()),
            "uniform_draw_eager_us": draw,
        }
        results.append({"rows": rows} | {k: best_us(synced(fn), args.calls, args.repeats) for k, fn in ways.items()})
        print(results[-1], flush=True)
    meta = machine_meta(args.device, args.threads, batch_size=args.batch_size, obs_dim=args.obs_dim)
    lines = [
        f"# Batch draw cost, {meta['date']} ({meta['device']}, {meta['threads']} thread(s), torch {meta['torch']}, "
        f"git {meta['git_sha']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Batch {args.batch_size}, obs {args.obs_dim}, action {args.action_dim}; best of {args.repeats} blocks of "
        f"{args.calls} calls, each followed by a device sync.",
        "",
        "| dataset rows | buffer `sample()` (µs) | `sample()` + copy into static inputs (µs) "
        "| `UniformDraw`, eager (µs) |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['buffer_sample_us']:.1f} | {r['buffer_sample_and_copy_us']:.1f} "
            f"| {r['uniform_draw_eager_us']:.1f} |"
        )
    write_results("draw", args.tag, meta, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
