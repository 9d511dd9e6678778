"""What a run cost: update rate, action latency, network evaluations per action, peak memory.

Recorded in each run's ``done`` marker (``cost``) so that a comparison report can show speed next to
score, measured on the machine that trained the run.
"""

from __future__ import annotations

import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from offrl_zoo.algorithm import Algorithm


def processor(device: torch.device | str) -> str:
    """The chip a run's times belong to: the GPU's name on CUDA; on the CPU its model and the vector
    instructions torch's kernels use there (AVX2, AVX512, ...), which set its speed and can change float
    results, e.g. which draw of a generated dataset the machine writes (docs/data.md)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")  # Linux; elsewhere platform's answer stands
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
    return f"{model} ({torch.backends.cpu.get_cpu_capability()})"


def _leaf_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if next(m.parameters(recurse=False), None) is not None]


@torch.no_grad()
def network_evaluations_per_action(algo: Algorithm, deterministic: bool = True) -> int:
    """Forward passes of the algorithm's networks during ``act`` on one observation.

    Each network's parameterised layers are hooked; a network evaluated n times (batched over any
    number of candidates) calls each of its layers at least n times, so the fewest calls among its
    called layers is its number of evaluations. Summed over the algorithm's top-level networks.
    """
    counts: dict[int, int] = {}
    handles = []
    networks = [m for m in algo.children() if any(True for _ in m.parameters())]
    for net in networks:
        for layer in _leaf_layers(net):
            counts[id(layer)] = 0
            handles.append(layer.register_forward_hook(lambda m, i, o: counts.__setitem__(id(m), counts[id(m)] + 1)))
    obs = torch.zeros(1, algo.spec.obs_dim, device=algo.obs_loc.device)
    was_training = algo.training
    algo.eval()
    try:  # eager and uncaptured even on the fast path: compiled code and graph replays call no hooks
        with torch.compiler.set_stance("force_eager"), torch.no_grad():
            algo._bounded_act(obs, deterministic)
    finally:
        algo.train(was_training)
        for handle in handles:
            handle.remove()
    total = 0
    for net in networks:
        called = [counts[id(layer)] for layer in _leaf_layers(net) if counts[id(layer)] > 0]
        total += min(called) if called else 0
    return total


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock timings measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_act(
    algo: Algorithm, batch: int, warmup: int = 2, repeats: int = 5, deterministic: bool = True
) -> float:
    """Median wall time of one ``act`` call on ``batch`` observations, after ``warmup`` untimed calls.

    Drawn inside ``fork_rng``, so timing never shifts a run's random stream.
    """
    device = algo.obs_loc.device
    obs = torch.zeros(batch, algo.spec.obs_dim, device=device)
    times = []
    with torch.random.fork_rng(devices=[]):
        for i in range(warmup + repeats):
            sync(device)
            start = time.perf_counter()
            algo.act(obs, deterministic=deterministic)
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory() -> dict[str, float | None]:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mb": round(rss_mb, 1), "peak_cuda_mb": None if cuda is None else round(cuda, 1)}


def run_cost(algo: Algorithm, updates: int, reused_steps: int, train_seconds: float, deterministic: bool) -> dict:
    with torch.random.fork_rng(devices=[]):
        nfe = network_evaluations_per_action(algo, deterministic)
    trained = max(updates - reused_steps, 0)
    return {
        "updates": updates,
        "reused_stage_steps": reused_steps,
        "updates_per_s": round(trained / train_seconds, 2) if train_seconds > 0 and trained else None,
        "act_ms_1": round(1000 * seconds_per_act(algo, 1, deterministic=deterministic), 3),
        "act_ms_16": round(1000 * seconds_per_act(algo, 16, deterministic=deterministic), 3),
        "nfe_per_action": nfe,
        "device": str(algo.obs_loc.device),
        "processor": processor(algo.obs_loc.device),
        "threads": torch.get_num_threads(),
        **peak_memory(),
    }
