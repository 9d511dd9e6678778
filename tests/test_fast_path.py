"""The fast path (``fast=true``: graph-safe optimiser steps, the whole update compiled) and the faster kernels
compute the same maths as the eager reference: equal values and gradients, equal losses over several updates."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from offrl_zoo import registry
from offrl_zoo.algorithm import compile_for_speed
from offrl_zoo.nets.activations import Mish, mish
from offrl_zoo.nets.ensemble import EnsembleLayerNorm
from offrl_zoo.optim import make_optimizer, step_optimizer
from offrl_zoo.testing import random_batch, tiny_spec

# Float32 rounding of the exp formula against aten::mish, measured over ±100: ≤ 2e-6 absolute.
MISH_ATOL = 5e-6
# Losses after a few updates, fast against eager: rounding differences of functional Adam and compiled
# loops grow through the updates but stay far below any learning signal.
LOSS_RTOL, LOSS_ATOL = 1e-4, 1e-5


@pytest.mark.parametrize("shape", [(64, 32), (2, 1024, 256), (2, 4096, 520)])  # each size regime of `mish`
def test_mish_matches_torch_in_value_and_gradient(shape):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(*shape, generator=g) * 12).requires_grad_()
    x.data[..., :3] = torch.tensor([-100.0, 0.0, 100.0])  # both saturations and zero
    ours, theirs = mish(x), F.mish(x)
    torch.testing.assert_close(ours, theirs, atol=MISH_ATOL, rtol=0)
    up = torch.randn(*shape, generator=g)
    (grad_ours,) = torch.autograd.grad(ours, x, up)
    (grad_theirs,) = torch.autograd.grad(theirs, x, up)
    torch.testing.assert_close(grad_ours, grad_theirs, atol=MISH_ATOL * up.abs().max().item(), rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(Mish()(x), theirs, atol=MISH_ATOL, rtol=0)


def test_ensemble_layer_norm_is_layer_norm_with_member_affine():
    norm = EnsembleLayerNorm(3, 8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(3, 5, 8)
    expected = torch.stack([F.layer_norm(x[i], (8,), norm.weight[i, 0], norm.bias[i, 0]) for i in range(3)])
    torch.testing.assert_close(norm(x), expected)


def _losses(name: str, fast: bool, steps: int, compiled: bool) -> list[dict[str, float]]:
    cls = registry.get(name)
    torch.manual_seed(0)
    algo = cls(tiny_spec(), cls.Config(fast=fast))  # fast only changes kernels, never the initial weights
    out = []
    torch.manual_seed(1)
    for stage in algo.stages():
        update = algo.compiled_update(stage) if compiled else stage.update
        for step in range(steps):
            metrics = update(random_batch(tiny_spec(), 32, seed=step), step)
            out.append({f"{stage.name}/{k}": float(v) for k, v in metrics.items()})
    return out


def _assert_close(fast: list[dict[str, float]], eager: list[dict[str, float]]) -> None:
    assert len(fast) == len(eager)
    for step, (a, b) in enumerate(zip(fast, eager, strict=True)):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=LOSS_RTOL, abs=LOSS_ATOL), (step, key, a[key], b[key])


@pytest.mark.parametrize("name", ["bc", "td3bc", "iql", "dql", "idql", "srpo", "dtql", "dtql-kl"])
def test_graph_safe_optimisers_give_the_eager_losses(name):
    _assert_close(_losses(name, fast=True, steps=4, compiled=False), _losses(name, fast=False, steps=4, compiled=False))


def test_compiled_dtql_gives_the_eager_losses_and_actions():
    """The whole fast path on the flagship: graph-safe optimisers, both stages' updates compiled whole
    (inductor, fullgraph), then act."""
    fast = _losses("dtql", fast=True, steps=5, compiled=True)
    _assert_close(fast, _losses("dtql", fast=False, steps=5, compiled=False))
    cls = registry.get("dtql")
    obs = random_batch(tiny_spec(), 4, seed=7)["observation"]
    actions = []
    for fast in (True, False):
        torch.manual_seed(0)
        algo = cls(tiny_spec(), cls.Config(fast=fast, candidates=16))
        torch.manual_seed(2)
        actions.append(algo.act(obs))
    torch.testing.assert_close(*actions, atol=1e-5, rtol=1e-5)  # same candidates drawn, same one picked


def test_tf32_is_set_for_cuda_matmuls_when_an_algorithm_is_built(monkeypatch):
    from offrl_zoo import algorithm

    saved = torch.backends.cuda.matmul.fp32_precision
    calls = []
    monkeypatch.setattr(
        algorithm, "set_matmul_precision", lambda device, tf32, bf16: calls.append((device.type, tf32, bf16))
    )
    cls = registry.get("bc")
    cls(tiny_spec(), cls.Config(tf32=True), "cpu")
    cls(tiny_spec(), cls.Config(cpu_bf16_matmul=True), "cpu")
    assert calls == [("cpu", True, False), ("cpu", False, True)]
    monkeypatch.undo()
    try:
        algorithm.set_matmul_precision(torch.device("cpu"), True)  # the CPU's matmuls are not CUDA's
        assert torch.backends.cuda.matmul.fp32_precision == saved
        algorithm.set_matmul_precision(torch.device("cuda"), True)
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        algorithm.set_matmul_precision(torch.device("cuda"), False)
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved


def test_cpu_bf16_matmul_rounds_cpu_matmuls_to_bfloat16_where_the_cpu_has_the_units():
    from offrl_zoo import algorithm
    from offrl_zoo.errors import ConfigError

    cls = registry.get("bc")
    cuda_saved = torch.backends.cuda.matmul.fp32_precision
    x, w = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)), torch.randn(256, 256)
    exact = x.double() @ w.double()
    try:
        if not algorithm.cpu_has_bf16_matmul():
            with pytest.raises(ConfigError, match="cpu_bf16_matmul=true: this CPU has no bfloat16 matrix units"):
                cls(tiny_spec(), cls.Config(cpu_bf16_matmul=True), "cpu")
            return
        cls(tiny_spec(), cls.Config(cpu_bf16_matmul=True), "cpu")
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
        err = ((x @ w).double() - exact).norm() / exact.norm()
        assert 1e-4 < err < 1e-2  # inputs rounded to an 8-bit mantissa: ≈ 2e-3, float32 alone ≈ 1e-7
        algorithm.set_matmul_precision(torch.device("cuda"), False, True)  # the CPU setting stays
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
        cls(tiny_spec(), cls.Config(), "cpu")  # building without it sets full float32 back
        assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"
        err = ((x @ w).double() - exact).norm() / exact.norm()
        assert err < 1e-5
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = cuda_saved


def test_a_bf16_run_is_evaluated_in_float32_on_a_cpu_without_bf16_units(tmp_path, monkeypatch):
    import yaml

    from offrl_zoo import algorithm
    from offrl_zoo.errors import ConfigError, ConfigWarning
    from offrl_zoo.train import RunRequest, train
    from offrl_zoo.train import run as run_module

    req = RunRequest("bc", task="toy-25_gaussian-near", steps=20, seed=0, eval_every=20, eval_episodes=2)
    run_dir = train(req, run_dir=tmp_path / "bc", progress=False)
    record = yaml.safe_load((run_dir / "config.yaml").read_text())
    record["algorithm_config"]["cpu_bf16_matmul"] = True  # as if trained on a CPU with AMX
    (run_dir / "config.yaml").write_text(yaml.safe_dump(record))
    monkeypatch.setattr(algorithm, "cpu_has_bf16_matmul", lambda: False)
    monkeypatch.setattr(run_module, "cpu_has_bf16_matmul", lambda: False)
    with pytest.warns(ConfigWarning, match="no bfloat16 units; acting in float32"):
        algo, _, _ = run_module.load_run(run_dir)
    assert not algo.cfg.cpu_bf16_matmul and torch.backends.mkldnn.matmul.fp32_precision == "ieee"
    with pytest.raises(ConfigError, match="cpu_bf16_matmul=true"):  # training there is refused
        registry.get("bc")(tiny_spec(), registry.get("bc").Config(cpu_bf16_matmul=True), "cpu")


@pytest.mark.parametrize(
    ("optimizer", "weight_decay"), [(torch.optim.Adam, 0.0), (torch.optim.Adam, 0.1), (torch.optim.AdamW, 0.1)]
)
@pytest.mark.parametrize("compiled", [False, True])
def test_graph_safe_adam_takes_torchs_adam_steps(optimizer, weight_decay, compiled):
    """The graph-safe step (its own bias corrections, module docstring of offrl_zoo.optim) against torch's
    eager Adam/AdamW on the same losses: equal weights and optimiser state to float32 rounding, a parameter
    the loss does not reach left alone by both, and the same step counts."""
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Mish(), torch.nn.Linear(16, 2)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    unused = [torch.nn.Parameter(torch.ones(3)) for _ in range(2)]
    opts = [
        make_optimizer(
            [*net.parameters(), extra], graph_safe=safe, optimizer=optimizer, lr=1e-2, weight_decay=weight_decay
        )
        for net, extra, safe in zip(nets, unused, (True, False), strict=True)
    ]

    def step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
        step_optimizer(opt, net(x).pow(2).mean())

    safe_step = compile_for_speed(step, fullgraph=True) if compiled else step
    for i in range(12):
        x = torch.randn(32, 6, generator=torch.Generator().manual_seed(i))
        safe_step(nets[0], opts[0], x)
        step(nets[1], opts[1], x)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(opts[0].state[a][key], opts[1].state[b][key], rtol=1e-5, atol=1e-9)
        assert float(opts[0].state[a]["step"]) == float(opts[1].state[b]["step"]) == 12
    assert torch.equal(unused[0], unused[1]) and torch.equal(unused[0], torch.ones(3))
