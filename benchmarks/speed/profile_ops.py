"""Where one algorithm's update (or act) spends its time: torch.profiler's operators by self CPU time,
grouped into matrix products, activations, normalisation, optimiser and the rest.

    python benchmarks/speed/profile_ops.py dtql --stage train --path eager --steps 30
    python benchmarks/speed/profile_ops.py dtql --act 1
    python benchmarks/speed/profile_ops.py dtql --stage train --path fast --kernels

``--kernels`` (fast path, CPU) times each kernel inductor generates on its own (its kernel profiling), so
the compiled graph's time splits into its kernels (optimiser updates, activations, normalisation) and the
graph's own wrapper code.
"""

from __future__ import annotations

import argparse

import torch
import torch._inductor.config
from torch.profiler import ProfilerActivity, profile

from offrl_zoo import registry
from offrl_zoo.bench.timing import synthetic_data
from offrl_zoo.data.buffer import make_replay_buffer
from offrl_zoo.heap import set_up_training_process
from offrl_zoo.spec import DataSpec

GROUPS = {  # ATen operator names (without "aten::", backward kernels included) → group
    "matmul": {"mm", "addmm", "bmm", "baddbmm"},
    "activation": {
        "mish",
        "mish_backward",
        "relu",
        "threshold_backward",
        "tanh",
        "tanh_backward",
        "silu",
        "silu_backward",
        "sigmoid",
        "softplus",
        "exp",
        "exp_",
        "reciprocal_",
        "clamp",
    },
    "layer norm": {"native_layer_norm", "native_layer_norm_backward"},
    "optimiser": {"_fused_adam_", "_fused_adamw_", "lerp_", "_foreach_lerp_", "addcdiv_", "addcmul_", "sqrt"},
}


def group_of(name: str) -> str:
    if name.startswith("Optimizer."):
        return "optimiser"
    if "_cpp_fused_" in name:  # inductor's generated kernels, named after the ops they fuse
        return "generated: optimiser (foreach Adam)" if "_foreach_" in name else "generated: other fused kernels"
    if "::" not in name:  # compiled graphs appear as their own frames
        return "compiled code and framework"
    op = name.split("::", 1)[1]
    return next((g for g, ops in GROUPS.items() if op in ops), "other elementwise, indexing, copies")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("algorithm")
    p.add_argument("--stage", help="stage name (default: the last)")
    p.add_argument("--act", type=int, metavar="B", help="profile act on B observations instead of an update")
    p.add_argument("--path", choices=["eager", "fast"], default="eager")
    p.add_argument("--obs-dim", type=int, default=11)
    p.add_argument("--action-dim", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--kernels", action="store_true", help="profile inductor's generated kernels one by one")
    args = p.parse_args()
    set_up_training_process(1)  # threads and the kept heap, as offrl-zoo train runs
    torch._inductor.config.cpp.enable_kernel_profile = args.kernels
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    cls = registry.get(args.algorithm)
    torch.manual_seed(0)
    algo = cls(spec, cls.Config(fast=args.path == "fast"))
    if args.act:
        obs = torch.zeros(args.act, spec.obs_dim)

        def work(step: int) -> None:
            algo.act(obs)
    else:
        stages = {s.name: s for s in algo.stages()}
        stage = stages[args.stage] if args.stage else list(stages.values())[-1]
        update = algo.compiled_update(stage)
        rb = make_replay_buffer(
            synthetic_data(spec, 100_000), stage.batch_size, stage.sampling, torch.Generator().manual_seed(0)
        )

        def work(step: int) -> None:
            update(rb.sample(), step)

    for step in range(10):  # warm-up (and compilation on the fast path)
        work(step)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for step in range(10, 10 + args.steps):
            work(step)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = {}
    for e in events:
        groups[group_of(e.key)] = groups.get(group_of(e.key), 0.0) + e.self_cpu_time_total
    per = "action" if args.act else "update"
    print(
        f"{args.algorithm} {'act ' + str(args.act) if args.act else stage.name} ({args.path}): "
        f"{total / 1000 / args.steps:.2f} ms per {per} (profiled, self CPU time)"
    )
    for group, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {group:38s} {t / 1000 / args.steps:7.2f} ms  {100 * t / total:5.1f} %")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
