"""The conformance checks every algorithm passes, built-in or plugin.

``tests/test_conformance.py`` runs them over every registered algorithm; a plugin author can call
them from their own tests: ``offrl_zoo.testing.check_all(MyAlgorithm)``.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator

import torch
from tensordict import TensorDict

from offrl_zoo.algorithm import Algorithm, Stage, compile_for_speed
from offrl_zoo.spec import DataSpec

OBS_DIM, ACTION_DIM, BATCH = 5, 3, 32


def tiny_spec(max_action: float = 1.0) -> DataSpec:
    return DataSpec(OBS_DIM, ACTION_DIM, (-max_action,) * ACTION_DIM, (max_action,) * ACTION_DIM)


def random_batch(spec: DataSpec, batch: int = BATCH, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    low, high = spec.action_bounds()
    action = low + (high - low) * torch.rand(batch, spec.action_dim, generator=g)
    terminated = torch.rand(batch, 1, generator=g) < 0.1
    return TensorDict(
        {
            "observation": torch.randn(batch, spec.obs_dim, generator=g),
            "action": action,
            "next": {
                "observation": torch.randn(batch, spec.obs_dim, generator=g),
                "reward": torch.randn(batch, 1, generator=g),
                "done": terminated.clone(),
                "terminated": terminated,
                "truncated": torch.zeros(batch, 1, dtype=torch.bool),
            },
        },
        batch_size=[batch],
    )


def make(algo_cls: type[Algorithm], seed: int = 0, **overrides) -> Algorithm:
    torch.manual_seed(seed)
    cfg = algo_cls.Config(**overrides)
    return algo_cls(tiny_spec(), cfg, "cpu")


def _tensors(algo: Algorithm) -> dict[str, torch.Tensor]:
    out = {k: v.detach().clone() for k, v in algo.named_parameters()}
    out.update({k: v.detach().clone() for k, v in algo.named_buffers()})
    return out


def _run(algo: Algorithm, stage: Stage, steps: range, seed: int = 1) -> Iterator[TensorDict]:
    update = algo.compiled_update(stage)  # the update and its after_update, as the trainer runs them
    for step in steps:
        yield update(random_batch(tiny_spec(), seed=seed + step), step)


def check_act(algo_cls: type[Algorithm]) -> None:
    algo = make(algo_cls)
    obs = torch.randn(7, OBS_DIM) * 3
    for deterministic in (True, False):
        action = algo.act(obs, deterministic=deterministic)
        assert action.shape == (7, ACTION_DIM), f"act returned shape {tuple(action.shape)}"
        assert torch.isfinite(action).all(), "act returned non-finite actions"
        assert (action >= -1).all() and (action <= 1).all(), "act left the action bounds"
    batched = algo.act(obs, deterministic=True)
    single = torch.cat([algo.act(obs[i : i + 1], deterministic=True) for i in range(len(obs))])
    if algo.deterministic_act_is_exact:
        assert torch.allclose(batched, single, atol=1e-5), "act on a batch differs from act one by one"


def check_update_touches_declared_modules(algo_cls: type[Algorithm], steps: int = 4) -> None:
    algo = make(algo_cls)
    for stage in algo.stages():
        declared = set(stage.modules)
        for name in declared:
            assert hasattr(algo, name), f"stage {stage.name!r} declares unknown module {name!r}"
        before = _tensors(algo)
        for metrics in _run(algo, stage, range(steps)):
            assert isinstance(metrics, TensorDict), f"{stage.name}: update must return a TensorDict"
            for key, value in metrics.items():
                assert isinstance(value, torch.Tensor) and value.ndim == 0, f"{stage.name}: metric {key} not 0-d"
                assert torch.isfinite(value), f"{stage.name}: metric {key} is {value} on a tiny batch"
        after = _tensors(algo)
        params = dict(algo.named_parameters())
        for key, old in before.items():
            owner = key.split(".")[0]
            changed = not torch.equal(old, after[key])
            if owner in declared and key in params:  # trained or target/EMA-updated parameters
                assert changed, f"stage {stage.name!r}: {key} (in declared module {owner!r}) did not change"
            elif owner not in declared:
                assert not changed, f"stage {stage.name!r}: {key} changed but {owner!r} is not in stage.modules"


def _roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def check_resume(algo_cls: type[Algorithm], steps: int = 3) -> None:
    """save → load into a fresh instance → continue gives exactly the losses of never stopping, with eager and
    with graph-safe optimisers (``fast=true``, stepped uncompiled here)."""
    for fast in (False, True):
        _check_resume(algo_cls, steps, fast)


def _check_resume(algo_cls: type[Algorithm], steps: int, fast: bool) -> None:
    for stage_index in range(len(make(algo_cls).stages())):
        algo = make(algo_cls, seed=0, fast=fast)
        stage = algo.stages()[stage_index]
        list(_run(algo, stage, range(steps)))
        state = _roundtrip(algo.training_state())
        rng = torch.get_rng_state()
        reference = [m.to_dict() for m in _run(algo, stage, range(steps, 2 * steps))]

        resumed = make(algo_cls, seed=123, fast=fast)
        resumed.load_training_state(state)
        torch.set_rng_state(rng)
        stage2 = resumed.stages()[stage_index]
        again = [m.to_dict() for m in _run(resumed, stage2, range(steps, 2 * steps))]
        for step, (a, b) in enumerate(zip(reference, again, strict=True)):
            for key in a:
                assert torch.equal(a[key], b[key]), f"{stage.name} step {steps + step}: {key} {a[key]} != {b[key]}"


def check_training_state_is_safe(algo_cls: type[Algorithm]) -> None:
    """The full training state loads with ``weights_only=True`` (no arbitrary unpickling needed)."""
    algo = make(algo_cls)
    state = _roundtrip(algo.training_state())
    clone = make(algo_cls, seed=5)
    clone.load_training_state(copy.deepcopy(state))
    for (k, a), (_, b) in zip(algo.state_dict().items(), clone.state_dict().items(), strict=True):
        assert torch.equal(a, b), f"{k} differs after load_training_state"


# Vectorised seeds against seeds run alone, after ``steps`` updates of every stage: batched matmuls and
# reductions round differently, and Adam's first steps amplify that, so the tolerance is loose (a wrong
# RNG stream or a gradient leaking between seeds gives differences of order 1).
VECTOR_RTOL, VECTOR_ATOL = 1e-3, 1e-4
# Weights: Adam turns a rounding difference in a near-zero gradient into up to one lr-sized step (3e-4)
# in a few single elements; a leak or a wrong stream moves every element.
WEIGHT_MEAN_ATOL, WEIGHT_MAX_ATOL = 1e-6, 1e-3


def _assert_same_weights(a: Algorithm, b: Algorithm, when: str) -> None:
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        diff = (p - q).abs()
        assert diff.mean() <= WEIGHT_MEAN_ATOL and diff.max() <= WEIGHT_MAX_ATOL, (
            f"{when}, {name}: mean |Δ| {diff.mean():.2e}, max |Δ| {diff.max():.2e}"
        )


def check_vectorized_seeds(algo_cls: type[Algorithm], n: int = 2, steps: int = 3) -> None:
    """N seeds trained as one batched model (``--vectorize-seeds``) compute what each seed computes alone:
    the same metrics at every step and the same weights after every stage. An update that draws random
    numbers with ``torch.rand*`` directly, instead of ``offrl_zoo.nets.seed_batch``, fails here. Checked on the
    eager path and on the fast path (one graph per step variant, learning rates as tensors; a CUDA capture
    replays that path), both against each seed's eager run."""
    for fast in (False, True):
        _check_vectorized_seeds(algo_cls, n, steps, fast)


def _check_vectorized_seeds(algo_cls: type[Algorithm], n: int, steps: int, fast: bool) -> None:
    from offrl_zoo.train.seed_batch_model import SeedBatch

    generators = [torch.Generator().manual_seed(1000 + i) for i in range(n)]
    batch = SeedBatch([make(algo_cls, seed=i, fast=fast) for i in range(n)], generators)
    alone = [make(algo_cls, seed=i) for i in range(n)]
    rng = [torch.Generator().manual_seed(1000 + i).get_state() for i in range(n)]
    for index, stage in enumerate(batch.stages()):
        batched = [
            batch.update(
                stage,
                torch.stack([random_batch(tiny_spec(), seed=100 * i + 10 * index + step) for i in range(n)]),
                step,
            )
            for step in range(steps)
        ]
        for i, algo in enumerate(alone):
            torch.set_rng_state(rng[i])
            own = algo.stages()[index]
            for step in range(steps):
                metrics = algo.compiled_update(own)(random_batch(tiny_spec(), seed=100 * i + 10 * index + step), step)
                for key, value in metrics.items():
                    torch.testing.assert_close(
                        batched[step][key][i],
                        value,
                        rtol=VECTOR_RTOL,
                        atol=VECTOR_ATOL,
                        msg=f"{stage.name} seed {i} step {step} {key} (fast={fast})",
                    )
            rng[i] = torch.get_rng_state()
            unstacked = batch.unstack(i)
            _assert_same_weights(unstacked, algo, f"after {stage.name}, seed {i}")
            for key, opt in algo.optimizers.items():  # the learning-rate schedules stepped as alone
                # (to float32 rounding: the fast path holds learning rates as float32 tensors)
                got = torch.tensor([float(g["lr"]) for g in unstacked.optimizers[key].param_groups])
                want = torch.tensor([float(g["lr"]) for g in opt.param_groups])
                torch.testing.assert_close(got, want, rtol=1e-6, atol=0, msg=f"after {stage.name}, seed {i}, {key} lr")
    if not fast:  # the fast path's act is compiled, which the batched act is not: checked eagerly
        _check_batched_act(batch, n)


def _check_batched_act(batch, n: int) -> None:
    """The seed batch's one-call ``act`` picks what each seed's own ``act`` picks, sampled actions included."""
    obs = torch.randn(n, 5, OBS_DIM, generator=torch.Generator().manual_seed(3))
    for deterministic in (True, False):
        batched = batch.act(obs, deterministic, [torch.Generator().manual_seed(77) for _ in range(n)])
        for i in range(n):
            with torch.random.fork_rng():
                torch.manual_seed(77)
                own = batch.unstack(i).act(obs[i], deterministic)
            torch.testing.assert_close(
                batched[i], own, rtol=VECTOR_RTOL, atol=VECTOR_ATOL, msg=f"act seed {i}, deterministic={deterministic}"
            )


# The graph-safe path against the eager reference after a few updates: the tensor-op Adam and
# autograd.grad round differently from backward + Adam.step; Adam's first steps amplify that, as above.
GRAPH_RTOL, GRAPH_ATOL = 1e-3, 1e-4


def check_graph_safe(algo_cls: type[Algorithm], steps: int = 3) -> None:
    """Every stage's whole update (forward, backward, every optimiser step, target updates) traces as ONE
    graph on the fast path (``torch.compile(fullgraph=True)``; a host sync, an ``Optimizer.step`` call or a
    scheduler inside ``update`` fails here), and the traced update computes what the eager reference
    computes: the same metrics at every step and the same weights after every stage. ``_act`` traces as one
    graph too."""
    fast, eager = make(algo_cls, fast=True), make(algo_cls)
    fast.eval()
    act = compile_for_speed(fast._act, fullgraph=True, backend="eager")
    for deterministic in (True, False):
        act(torch.randn(4, OBS_DIM), deterministic)
    fast.train()
    for stage_fast, stage_eager in zip(fast.stages(), eager.stages(), strict=True):
        traced = fast.compiled_update(stage_fast, backend="eager")
        for step in range(steps):
            batch = random_batch(tiny_spec(), seed=7 + step)
            torch.manual_seed(step)
            got = traced(batch, step)
            torch.manual_seed(step)
            want = eager.compiled_update(stage_eager)(batch, step)
            for key, value in want.items():
                torch.testing.assert_close(
                    got[key], value, rtol=GRAPH_RTOL, atol=GRAPH_ATOL, msg=f"{stage_fast.name} step {step} {key}"
                )
        _assert_same_weights(fast, eager, f"after {stage_fast.name}")


UNDECLARED = "does update read its step beyond Stage.variant?"


def _probe_steps(n: int) -> list[int]:
    """Steps of a stage of ``n`` steps around the usual thresholds: the first few, 999–1 006 (warm-ups that
    end at step 1 000, every-5 and every-2 periods) and the last few."""
    return sorted({*range(8), *range(999, 1007), *range(n - 3, n)} & set(range(n)))


def check_step_variants(algo_cls: type[Algorithm], **overrides) -> None:
    """Every stage's ``update`` reads its step only through ``Stage.variant``: the fast path builds one graph per
    variant key at the first step with that key and reuses it for every later step with that key
    (``offrl_zoo.graphs``). Run eagerly at steps around the usual thresholds, the update given each key's first
    step in place of the true one must compute exactly what the true step computes. An update that branches on
    its step without declaring it (or computes with the step) fails here."""
    true, replayed = make(algo_cls, **overrides), make(algo_cls, **overrides)
    for stage_true, stage_replayed in zip(true.stages(), replayed.stages(), strict=True):
        first: dict = {}
        for step in _probe_steps(stage_true.steps):
            key = None if stage_replayed.variant is None else stage_replayed.variant(step)
            batch = random_batch(tiny_spec(), seed=11 + step)
            results = []
            for stage, as_step in ((stage_true, step), (stage_replayed, first.setdefault(key, step))):
                torch.manual_seed(step)
                results.append(stage.update(batch, as_step))
                if stage.after_update is not None:  # runs outside the graphs, with the true step
                    stage.after_update(step)
            want, got = results
            where = f"{stage_true.name} step {step} run as step {first[key]}"
            assert set(got.keys()) == set(want.keys()), (
                f"{where}: metrics {sorted(got.keys())}, the true step's {sorted(want.keys())}; {UNDECLARED}"
            )
            for k, value in want.items():
                torch.testing.assert_close(got[k], value, rtol=0, atol=0, msg=f"{where}: {k}; {UNDECLARED}")
        for (name, a), (_, b) in zip(_tensors(true).items(), _tensors(replayed).items(), strict=True):
            assert torch.equal(a, b), f"{stage_true.name}: {name} differs; {UNDECLARED}"


CHECKS = (
    check_act,
    check_update_touches_declared_modules,
    check_resume,
    check_training_state_is_safe,
    check_vectorized_seeds,
    check_graph_safe,
    check_step_variants,
)


def check_all(algo_cls: type[Algorithm]) -> None:
    for check in CHECKS:
        check(algo_cls)
