"""CUDA only: what whole-step capture mechanisms give each stage update, to choose one by measurement.

For every registered algorithm and each of its stages (hopper shapes, official batch and network
sizes, a static batch drawn once from a TorchRL buffer over 100 000 synthetic transitions), the mean
wall time of one ``update`` under:

- ``eager``: ``stage.update`` as the trainer calls it today (the reference);
- ``graph``: the same call captured whole (forward, backward, optimiser steps, target/EMA updates) in
  one ``torch.cuda.CUDAGraph`` after a side-stream warm-up, optimisers switched to ``capturable=True``,
  then replayed;
- ``graph+draw``: as ``graph``, with the batch drawn inside the graph (``torch.randint`` on the device,
  default CUDA generator) instead of passed in;
- ``cudagraphmodule``: ``tensordict.nn.CudaGraphModule`` around the update (TorchRL's fast scripts);
- for the stages named by ``--compile`` only: ``compile+graph`` (``torch.compile`` of the update, then
  captured as ``graph``) and ``reduce-overhead`` (``torch.compile(mode="reduce-overhead")``).

This is a probe of the mechanisms on today's updates, not the graph-safe training path: captured
replays reuse the Python ``step`` and learning rates of the capture (schedules and step-dependent
branches are frozen), which is fine for timing and wrong for training. A mechanism that fails is
recorded with its error. Also times ``act`` for one observation, eager and captured.

    python benchmarks/speed/capture.py --steps 200 --compile dtql:train iql:train

``--tf32`` builds every algorithm with ``tf32=true`` (float32 matmuls on TF32 tensor cores), to measure what
that gives the same mechanisms.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable

import torch
from _results import add_common_args, machine_meta, write_results


def _capturable(algo: torch.nn.Module) -> None:
    for opt in algo.optimizers.values():  # type: ignore[attr-defined]
        for group in opt.param_groups:
            group["capturable"] = True


def _timed(fn: Callable[[], object], steps: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def _graph(fn: Callable[[], object], warmup: int) -> Callable[[], object]:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def measure_stage(name: str, stage_index: int, mechanism: str, args: argparse.Namespace) -> dict:
    """One stage under one mechanism, on a freshly built algorithm."""
    from offrl_zoo import registry
    from offrl_zoo.algorithm import compile_for_speed
    from offrl_zoo.bench.timing import synthetic_data
    from offrl_zoo.data.buffer import make_replay_buffer
    from offrl_zoo.spec import DataSpec

    device = torch.device("cuda")
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    data = synthetic_data(spec, 100_000, device)
    cls = registry.get(name)
    torch.manual_seed(0)
    algo = cls(spec, cls.Config(tf32=args.tf32), device)
    stage = algo.stages()[stage_index]
    rb = make_replay_buffer(data, stage.batch_size, stage.sampling, torch.Generator(device=device).manual_seed(0))
    batch = rb.sample().to(device)
    step = 10_000  # past every warm-up threshold (DQL's EMA start, delayed actors)
    update = stage.update
    if mechanism in ("compile+graph",):
        update = compile_for_speed(stage.update)
    if mechanism in ("graph", "graph+draw", "compile+graph", "cudagraphmodule"):
        _capturable(algo)

    if mechanism == "eager":
        fn: Callable[[], object] = lambda: update(batch, step)  # noqa: E731
    elif mechanism in ("graph", "compile+graph"):
        fn = _graph(lambda: update(batch, step), args.warmup)
    elif mechanism == "graph+draw":
        n, size = data.batch_size[0], stage.batch_size
        fn = _graph(lambda: update(data[torch.randint(n, (size,), device=device)], step), args.warmup)
    elif mechanism == "cudagraphmodule":
        from tensordict.nn import CudaGraphModule

        wrapped = CudaGraphModule(lambda td: update(td, step), warmup=args.warmup)
        fn = lambda: wrapped(batch)  # noqa: E731
    elif mechanism == "reduce-overhead":
        from torch._inductor import config as inductor_config

        inductor_config.fallback_random = True  # draw the eager random numbers, as compile_for_speed does
        compiled = torch.compile(stage.update, mode="reduce-overhead")
        fn = lambda: compiled(batch, step)  # noqa: E731
    else:
        raise ValueError(mechanism)
    started = time.perf_counter()
    for _ in range(args.warmup + 2):  # CudaGraphModule and reduce-overhead capture during these calls
        fn()
    torch.cuda.synchronize()
    setup_s = time.perf_counter() - started
    ms = 1000 * _timed(fn, args.steps)
    return {"stage": stage.name, "batch_size": stage.batch_size, "ms": ms, "setup_s": setup_s}


def measure_act(name: str, args: argparse.Namespace) -> dict:
    from offrl_zoo import registry
    from offrl_zoo.spec import DataSpec

    device = torch.device("cuda")
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    cls = registry.get(name)
    torch.manual_seed(0)
    algo = cls(spec, cls.Config(tf32=args.tf32), device).eval()
    obs = torch.zeros(1, spec.obs_dim, device=device)
    out: dict = {"eager_ms": 1000 * _timed(lambda: algo.act(obs), args.act_repeats)}
    try:
        with torch.no_grad():
            replay = _graph(lambda: algo._act(obs, True), args.warmup)
        out["graph_ms"] = 1000 * _timed(replay, args.act_repeats)
    except Exception as err:  # a rule that cannot be captured is a finding, not a crash
        out["graph_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, threads=False)
    p.add_argument("--compile", nargs="*", default=[], metavar="ALGO:STAGE", help="stages that also try compile")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--act-repeats", type=int, default=200)
    p.add_argument("--tf32", action="store_true", help="config tf32=true: float32 matmuls on TF32 tensor cores")
    return p.parse_args(argv)


def markdown(meta: dict, results: list[dict], acts: dict) -> str:
    mechanisms = ["eager", "graph", "graph+draw", "cudagraphmodule", "compile+graph", "reduce-overhead"]
    lines = [
        f"# Whole-step capture mechanisms, {meta['date']} "
        f"({meta['machine']}, torch {meta['torch']}, git {meta['git_sha']})",
        "",
        f"Command: `{meta['command']}`",
        "",
        "Milliseconds per update (mean of the timed replays), hopper shapes, official sizes, one static batch"
        f"{', float32 matmuls in TF32 (tf32=true)' if meta.get('tf32') else ''}. "
        "A probe of mechanisms on today's updates: captured replays freeze the step and learning rates. "
        "`×` is eager / best captured. Empty: not tried; `fail`: the mechanism failed (errors below).",
        "",
        "| algorithm | stage | batch | " + " | ".join(mechanisms) + " | × |",
        "|---|---|---|" + "---|" * (len(mechanisms) + 1),
    ]
    errors = []
    for (name, stage), rows in _group(results).items():
        cells, best = [], None
        for m in mechanisms:
            r = rows.get(m)
            if r is None:
                cells.append("")
            elif "error" in r:
                cells.append("fail")
                errors.append(f"- {name} {stage} {m}: {r['error']}")
            else:
                cells.append(f"{r['ms']:.3f}")
                if m != "eager":
                    best = r["ms"] if best is None else min(best, r["ms"])
        eager = rows.get("eager", {}).get("ms")
        ratio = f"{eager / best:.1f}" if eager and best else ""
        batch = next((r["batch_size"] for r in rows.values() if "batch_size" in r), "")
        lines.append(f"| {name} | {stage} | {batch} | " + " | ".join(cells) + f" | {ratio} |")
    lines += ["", "Action selection, 1 observation (ms):", "", "| algorithm | eager | graph |", "|---|---|---|"]
    for name, a in acts.items():
        graph = f"{a['graph_ms']:.3f}" if "graph_ms" in a else "fail"
        if "graph_error" in a:
            errors.append(f"- {name} act: {a['graph_error']}")
        lines.append(f"| {name} | {a['eager_ms']:.3f} | {graph} |")
    if errors:
        lines += ["", "Failures:", "", *errors]
    return "\n".join(lines) + "\n"


def _group(results: list[dict]) -> dict:
    out: dict = {}
    for r in results:
        out.setdefault((r["algorithm"], r["stage"]), {})[r["mechanism"]] = r
    return out


def main() -> None:
    args = parse()
    from offrl_zoo import registry
    from offrl_zoo.spec import DataSpec

    assert torch.cuda.is_available(), "capture.py measures CUDA graphs: run it on a GPU"
    names = args.algorithms or sorted(registry.builtins())
    spec = DataSpec(args.obs_dim, args.action_dim, (-1.0,) * args.action_dim, (1.0,) * args.action_dim)
    meta = machine_meta("cuda", 1, timed_steps=args.steps, warmup=args.warmup, tf32=args.tf32)  # machine: the GPU
    plan = []  # the compile variants last: they are the slow ones, and a timeout then keeps the rest
    for name in names:
        cls = registry.get(name)
        for i, stage in enumerate(cls(spec, cls.Config(), "cpu").stages()):
            plan += [(name, i, stage.name, m) for m in ("eager", "graph", "graph+draw", "cudagraphmodule")]
            if f"{name}:{stage.name}" in args.compile:
                plan += [(name, i, stage.name, m) for m in ("compile+graph", "reduce-overhead")]
    plan.sort(key=lambda item: item[3] in ("compile+graph", "reduce-overhead"))
    results: list[dict] = []
    acts: dict[str, dict] = {}
    for name in names:
        acts[name] = measure_act(name, args)
        print(json.dumps({"act": name, **acts[name]}), flush=True)
    for name, i, stage_name, mechanism in plan:
        row = {"algorithm": name, "mechanism": mechanism, "stage": stage_name}
        try:
            row |= measure_stage(name, i, mechanism, args)
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            traceback.print_exc()
        results.append(row)
        print(json.dumps(row), flush=True)
        rows = results + [{"act": n, **a} for n, a in acts.items()]
        write_results("capture", args.tag, meta, rows, markdown(meta, results, acts))


if __name__ == "__main__":
    main()
