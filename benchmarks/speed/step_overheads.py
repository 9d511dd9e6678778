"""Two host-side costs of a CPU training step, measured for every algorithm's fast path: the graph-safe Adam
(offrl-zoo's own tensor-op Adam against torch's capturable functional Adam) and the C heap's policy (freed
memory kept in the heap, ``offrl_zoo.heap``, against glibc's defaults).

For each algorithm, two fresh subprocesses: one with the heap kept (as ``offrl-zoo train`` runs), one with
``OFFRL_ZOO_SYSTEM_MALLOC=1``. In each, the last stage's fast-path update is compiled twice, once with each
Adam (the optimiser step is traced into the graph, so each instance compiles its own), and the two run in
alternating blocks (ABBA, medians over blocks) with page faults counted per update. Same losses either way
(tests/test_fast_path.py); only time differs.

    python benchmarks/speed/step_overheads.py --blocks 8 --block-steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from _results import ab_blocks, add_ab_args, add_common_args, machine_meta, run_child, write_results

ADAMS = ("torch", "zoo")


def torch_capturable_adam(params, grads, optimizer, group) -> None:  # noqa: ANN001 - offrl_zoo.optim._adam_group's
    """The graph-safe step as it was before offrl-zoo's own: torch's functional multi-tensor Adam, capturable."""
    from torch.optim.adam import adam

    states = [optimizer.state[p] for p in params]
    adam(
        params,
        grads,
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [],
        [s["step"] for s in states],
        foreach=True,
        capturable=True,
        decoupled_weight_decay=group.get("decoupled_weight_decay", False),
        amsgrad=False,
        beta1=group["betas"][0],
        beta2=group["betas"][1],
        lr=group["lr"],
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=False,
    )


def measure(name: str, args: argparse.Namespace) -> dict:
    import torch

    from offrl_zoo import optim, registry
    from offrl_zoo.bench.timing import synthetic_data
    from offrl_zoo.data.buffer import make_replay_buffer, training_step
    from offrl_zoo.heap import keep_freed_memory
    from offrl_zoo.spec import DataSpec

    kept = keep_freed_memory()
    torch.set_num_threads(args.threads)
    adams = {"torch": torch_capturable_adam, "zoo": optim._adam_group}
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    data = synthetic_data(spec, 100_000)
    cls = registry.get(name)
    steps = {}
    for adam in ADAMS:
        optim._adam_group = adams[adam]  # read when the update is traced, and guarded by the compiled code
        torch.manual_seed(0)
        algo = cls(spec, cls.Config(fast=True, draw="buffer"), "cpu")
        stage = algo.stages()[-1]
        rb = make_replay_buffer(data, stage.batch_size, stage.sampling, torch.Generator().manual_seed(0))
        step_fn = training_step(algo, stage, data, rb, 0, algo.batch_draw(stage))
        counter = iter(range(10**9))
        for _ in range(args.warmup):  # compilation, then steps
            step_fn(next(counter))
        steps[adam] = lambda f=step_fn, c=counter: f(next(c))

    def select(adam: str) -> None:
        optim._adam_group = adams[adam]

    seconds, faults = ab_blocks(steps, select, args.blocks, args.block_steps)
    return {
        "algorithm": name,
        "stage": f"{stage.name} (batch {stage.batch_size})",
        "heap_kept": kept,
        **{f"{a}_ms": 1000 * seconds[a] for a in ADAMS},
        **{f"{a}_faults": faults[a] for a in ADAMS},
    }


def markdown(meta: dict, results: list[dict]) -> str:
    lines = [
        f"# Host-side step costs on the CPU, fast path, {meta['date']} ({meta['machine']}, {meta['threads']} "
        f"thread(s), torch {meta['torch']}, git {meta['git_sha']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Shapes obs={meta['obs_dim']}, action={meta['action_dim']}; official batch and network sizes; each "
        "algorithm's last stage. Per algorithm two processes (C heap kept, as `offrl-zoo train` runs; glibc's "
        "defaults, `OFFRL_ZOO_SYSTEM_MALLOC=1`), in each the update compiled with torch's capturable Adam and "
        f"with offrl-zoo's, alternating in {meta['blocks']} blocks (ABBA) of {meta['block_steps']} updates; "
        "medians over blocks; ms per update and minor page faults per update.",
        "",
        "| algorithm | stage | glibc defaults, torch Adam | glibc defaults, zoo Adam | heap kept, torch Adam | "
        "heap kept, zoo Adam | torch Adam / zoo Adam (heap kept) | glibc / kept (zoo Adam) | "
        "faults per update (glibc → kept) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, kept in results:
        lines.append(
            f"| {kept['algorithm']} | {kept['stage']} | {system['torch_ms']:.2f} | {system['zoo_ms']:.2f} | "
            f"{kept['torch_ms']:.2f} | {kept['zoo_ms']:.2f} | {kept['torch_ms'] / kept['zoo_ms']:.3f}× | "
            f"{system['zoo_ms'] / kept['zoo_ms']:.3f}× | {system['zoo_faults']:.0f} → {kept['zoo_faults']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    add_ab_args(p, "untimed updates of each side first")
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return

    from offrl_zoo import registry

    results = []
    for name in args.algorithms or sorted(registry.available()):
        pair = []
        for system in (True, False):
            os.environ["OFFRL_ZOO_SYSTEM_MALLOC"] = "1" if system else "0"
            pair.append(run_child(__file__, ["--one", name, *sys.argv[1:]], args.threads, name))
        results.append(pair)
        system, kept = pair
        print(
            f"{name}: torch/zoo Adam {kept['torch_ms'] / kept['zoo_ms']:.3f}×, glibc/kept heap "
            f"{system['zoo_ms'] / kept['zoo_ms']:.3f}× ({system['zoo_faults']:.0f} → {kept['zoo_faults']:.0f} faults)",
            flush=True,
        )
    meta = machine_meta(
        "cpu",
        args.threads,
        obs_dim=args.obs_dim,
        action_dim=args.action_dim,
        blocks=args.blocks,
        block_steps=args.block_steps,
    )
    write_results("step-overheads", args.tag, meta, results, markdown(meta, results))


if __name__ == "__main__":
    main()
