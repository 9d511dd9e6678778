"""Step variants: the fast path runs each step through the graph built for its variant key, and the
conformance check catches an update that branches on its step without declaring it."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from tensordict import TensorDict

from offrl_zoo import registry, testing
from offrl_zoo.graphs import MAX_VARIANTS, VariantGraphs


def test_each_variant_is_built_once_at_its_first_step_and_reused():
    seen: list[int] = []

    def update(batch: TensorDict, step: int) -> TensorDict:
        seen.append(step)
        return TensorDict(step=torch.tensor(step), x=batch["x"] * 2)

    graphs = VariantGraphs(update, variant=lambda step: step % 3 == 0)
    out = [graphs(TensorDict(x=torch.tensor(float(s))), s) for s in range(1, 8)]
    assert [int(o["step"]) for o in out] == [1, 1, 3, 1, 1, 3, 1]  # each key's first step stands in
    assert [float(o["x"]) for o in out] == [2.0 * s for s in range(1, 8)]  # the batch is the step's own
    assert set(graphs.graphs) == {False, True}
    assert seen == [1, 1, 3, 1, 1, 3, 1]


def test_a_variant_per_step_is_refused():
    graphs = VariantGraphs(lambda batch, step: TensorDict(), variant=lambda step: step)
    for step in range(MAX_VARIANTS):
        graphs(TensorDict(), step)
    with pytest.raises(ValueError, match="not the step itself"):
        graphs(TensorDict(), MAX_VARIANTS)


def test_copies_of_an_algorithm_leave_its_compiled_act_behind():
    algo = testing.make(registry.get("td3bc"), fast=True)
    algo._compiled_act = lambda obs, det: obs  # stands for a compiled function bound to this instance
    clone = copy.deepcopy(algo)
    assert clone._compiled_act is None and clone._act_graphs == {} and algo._compiled_act is not None


def test_no_variant_is_one_graph_for_every_step():
    graphs = VariantGraphs(lambda batch, step: TensorDict(step=torch.tensor(step)), variant=None)
    assert [int(graphs(TensorDict(), s)["step"]) for s in (5, 6, 7)] == [5, 5, 5]
    assert list(graphs.graphs) == [None]


def test_dtql_declares_its_optional_ema_as_a_variant():
    testing.check_step_variants(registry.get("dtql"), keep_ema=True)


def test_an_undeclared_step_branch_fails_the_conformance_check():
    """TD3+BC without its variant: the delayed actor step would be frozen into the first step's graph."""
    td3bc = registry.get("td3bc")

    class Undeclared(td3bc):  # type: ignore[misc, valid-type]
        def stages(self):
            return [dataclasses.replace(stage, variant=None) for stage in super().stages()]

    with pytest.raises(AssertionError, match="beyond Stage.variant"):
        testing.check_step_variants(Undeclared)


def test_captures_only_on_cuda_with_fast():
    algo = testing.make(registry.get("iql"), fast=True)
    assert not algo.captures()  # the CPU compiles, nothing to capture
