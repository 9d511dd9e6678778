"""N independently seeded copies of one algorithm trained as one batched model (``--vectorize-seeds``).

``SeedBatch`` stacks the copies' parameters, buffers and optimiser states along a leading seed
dimension inside a template instance of the algorithm, and runs each stage's own ``update`` once per
step under ``torch.vmap`` (``offrl_zoo.nets.seed_batch`` has the hooks that make that possible). Seed
i of the batch computes what a run of seed i alone computes, to float rounding: its own batches, its
own random numbers, its own optimiser state. ``unstack(i)`` writes seed i back into its own algorithm
instance, which is what the trainer evaluates and checkpoints, so vectorised runs leave ordinary run
directories behind. On the fast path the batched update runs as one graph per step variant, captured on
CUDA (``offrl_zoo.graphs``).
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable

import torch
from tensordict import TensorDict
from torch import nn

from offrl_zoo.algorithm import Algorithm, Stage
from offrl_zoo.graphs import CapturedStep, VariantGraphs
from offrl_zoo.nets.seed_batch import seed_streams


class SeedBatch:
    """The algorithms ``algos`` (same class, config and spec; one per seed) as one vmapped model.

    ``generators[i]`` is seed i's random stream for the draws inside ``update``; the trainer keeps it
    equal to the global RNG state a lone run of seed i would have.
    """

    def __init__(self, algos: list[Algorithm], generators: list[torch.Generator]) -> None:
        if len({type(a) for a in algos}) != 1:
            raise ValueError("a seed batch needs copies of one algorithm")
        self.algos = algos
        self.generators = generators
        self.n = len(algos)
        self.template = copy.deepcopy(algos[0])
        self.params: dict[str, nn.Parameter] = {
            name: nn.Parameter(
                torch.empty((self.n, *p.shape), dtype=p.dtype, device=p.device), requires_grad=p.requires_grad
            )
            for name, p in self.template.named_parameters()
        }
        self.buffers = {
            name: torch.empty((self.n, *b.shape), dtype=b.dtype, device=b.device)
            for name, b in self.template.named_buffers()
        }
        # the stacked tensors as the template's own (the optimisers step them); under vmap each seed's views of
        # them take their place for one update (``update``), as TorchRL's functional losses swap parameters
        self.stacked = TensorDict({**self.params, **self.buffers}, batch_size=[self.n]).unflatten_keys(".")
        self.stacked.to_module(self.template)
        self._updates: dict[str, Callable[[TensorDict, int], TensorDict]] = {}  # per stage name (``update``)
        self._act_graphs: dict[tuple, tuple[CapturedStep, list[torch.Generator]]] = {}  # (``act``)
        self._rebuild_optimizers()
        self.stack()

    def _rebuild_optimizers(self) -> None:
        """The template's optimisers, rebuilt on the stacked parameters. Its schedulers keep the optimisers they
        were built with (``lr_sources``), which never step: they only carry the schedule's learning rates, which
        ``update`` copies into the stacked optimisers after the stage's ``after_update``."""
        names = {id(p): n for n, p in self.algos[0].named_parameters()}
        self.lr_sources = dict(self.template.optimizers)
        for opt in self.lr_sources.values():
            opt._opt_called = True  # type: ignore[attr-defined]  # never stepped: keeps its scheduler from warning
        for key, opt in self.algos[0].optimizers.items():
            groups = [
                {
                    # a tensor learning rate gets its own copy, filled in place from then on (``_copy_lrs``)
                    **{k: _copy(v) for k, v in g.items() if k != "params"},
                    "params": [self.params[names[id(p)]] for p in g["params"]],
                }
                for g in opt.param_groups
            ]
            # the optimiser's own class; each group carries every hyperparameter, so none is passed
            optimizer_class: Callable[..., torch.optim.Optimizer] = type(opt)
            self.template.optimizers[key] = optimizer_class(groups)

    # -- moving state between the seeds' own algorithms and the stack ----------------------------
    @torch.no_grad()
    def stack(self) -> None:
        """Load every seed's current weights, buffers, optimiser and scheduler states into the stack. The
        optimiser states are new tensors, so the graphs of earlier steps (which read the old ones) go."""
        self._updates.clear()
        for table, named in ((self.params, "named_parameters"), (self.buffers, "named_buffers")):
            sources = [dict(getattr(a, named)()) for a in self.algos]
            for name, stacked in table.items():
                stacked.copy_(torch.stack([s[name] for s in sources]))
        for key, opt in self.template.optimizers.items():
            opt.state.clear()
            seeds = [_flat_params(a.optimizers[key]) for a in self.algos]
            for j, p in enumerate(_flat_params(opt)):
                states = [a.optimizers[key].state.get(own[j], {}) for a, own in zip(self.algos, seeds, strict=True)]
                if states[0]:
                    opt.state[p] = {
                        k: torch.stack([s[k] for s in states]) if _per_seed_state(k, v) else _copy(v)
                        for k, v in states[0].items()
                    }
            _copy_lrs(opt, self.algos[0].optimizers[key])
            _copy_lrs(self.lr_sources[key], self.algos[0].optimizers[key])
        for key, sched in self.template.schedulers.items():
            sched.load_state_dict(self.algos[0].schedulers[key].state_dict())

    @torch.no_grad()
    def unstack(self, i: int) -> Algorithm:
        """Write seed i's slice of the stack into its own algorithm instance and return that instance."""
        algo = self.algos[i]
        for table, named in ((self.params, "named_parameters"), (self.buffers, "named_buffers")):
            tensors = dict(getattr(algo, named)())
            for name, stacked in table.items():
                tensors[name].copy_(stacked[i])
        for key, opt in self.template.optimizers.items():
            target = algo.optimizers[key]
            target.state.clear()
            for p, own in zip(_flat_params(opt), _flat_params(target), strict=True):
                if opt.state.get(p):
                    target.state[own] = {
                        k: v[i].clone() if _per_seed_state(k, v) else _copy(v) for k, v in opt.state[p].items()
                    }
            _copy_lrs(target, opt)
        for key, sched in self.template.schedulers.items():
            algo.schedulers[key].load_state_dict(sched.state_dict())
        return algo

    # -- training ---------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        return self.template.stages()

    def update(self, stage: Stage, batch: TensorDict, step: int) -> TensorDict:
        """One step of ``stage`` for every seed: ``batch`` is (N, B), the result's values are (N,)."""
        run = self._updates.get(stage.name)
        if run is None:
            run = self._updates[stage.name] = self._batched_update(stage)
        out = run(batch, step)
        if stage.after_update is not None:  # the template's schedulers, on their own optimisers' learning rates
            with warnings.catch_warnings():
                # those optimisers are deep copies (of seed 0's), whose step the scheduler's wrapper did not mark
                warnings.filterwarnings("ignore", re.escape("Seems like `optimizer.step()` has been overridden"))
                stage.after_update(step)
            for key, opt in self.template.optimizers.items():
                _copy_lrs(opt, self.lr_sources[key])
        return out

    def _batched_update(self, stage: Stage) -> Callable[[TensorDict, int], TensorDict]:
        """``stage.update`` vmapped over the seeds. On the fast path it runs as the lone fast path runs it, one
        graph per step variant (``offrl_zoo.graphs``), captured on CUDA with the seeds' generators registered, so
        a replay draws each seed's numbers from its own stream. It is not compiled: Dynamo does not trace the
        hooks that leave the vmap level (``offrl_zoo.nets.seed_batch``), and a capture needs no tracing."""

        def one_seed(state: TensorDict, seed_batch: TensorDict, step: int) -> dict:
            with state.to_module(self.template):  # seed i's views in place of the stack, restored after
                return dict(stage.update(seed_batch, step).items())

        def batched(batch: TensorDict, step: int) -> TensorDict:
            with seed_streams(self.generators):
                out = torch.vmap(one_seed, in_dims=(0, 0, None), randomness="error")(self.stacked, batch, step)
            return TensorDict(out, batch_size=[self.n])

        if not self.template.cfg.fast:
            return batched
        return VariantGraphs(batched, stage.variant, capture=self.template.captures(), generators=self.generators)

    @torch.no_grad()
    def finite(self) -> list[bool]:
        """Per seed: are all its parameters finite? (A diverged seed is left out of batched evaluation.)"""
        return torch.stack([p.isfinite().flatten(1).all(1) for p in self.params.values()]).all(0).tolist()

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, deterministic: bool, generators: list[torch.Generator], seeds: list[int] | None = None
    ) -> torch.Tensor:
        """The actions of the seeds at positions ``seeds`` (default all) in one call: raw observations
        (len(seeds), B, obs_dim) → (len(seeds), B, action_dim). Each seed acts with its own weights and draws
        from its generator in ``generators``, so it picks what ``algo.act`` of that seed alone picks with the
        global generator in that generator's state. Captured on CUDA on the fast path, per observation shape,
        ``deterministic`` and ``seeds``, as a lone ``act`` is."""
        positions = tuple(range(self.n)) if seeds is None else tuple(seeds)
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.template.obs_loc.device)
        if obs.shape[0] != len(positions) or len(generators) != len(positions):
            raise ValueError(
                f"seed batch act: {len(positions)} seeds, got observations {tuple(obs.shape)} and "
                f"{len(generators)} generators"
            )
        was_training = self.template.training
        self.template.eval()  # dropout etc. off while acting, as in ``Algorithm.act``
        try:
            if not self.template.captures():
                return self._batched_act(positions, deterministic, generators)(TensorDict(obs=obs))["action"]
            return self._captured_act(obs, positions, deterministic, generators)
        finally:
            self.template.train(was_training)

    def _batched_act(
        self, positions: tuple[int, ...], deterministic: bool, generators: list[torch.Generator]
    ) -> Callable[[TensorDict], TensorDict]:
        index = (
            None if positions == tuple(range(self.n)) else torch.tensor(positions, device=self.template.obs_loc.device)
        )

        def one_seed(state: TensorDict, seed_obs: torch.Tensor) -> torch.Tensor:
            with state.to_module(self.template):
                return self.template._bounded_act(seed_obs, deterministic)

        def batched(td: TensorDict) -> TensorDict:
            stacked = self.stacked if index is None else self.stacked[index]  # a gather: inside a graph
            with seed_streams(generators):
                action = torch.vmap(one_seed, randomness="error")(stacked, td["obs"])
            return TensorDict(action=action)

        return batched

    def _captured_act(
        self, obs: torch.Tensor, positions: tuple[int, ...], deterministic: bool, generators: list[torch.Generator]
    ) -> torch.Tensor:
        """``act`` through a CUDA graph. A graph draws from the generators registered at its capture, so it keeps
        its own (one per seed position) and carries the callers' states in and out of them around each call."""
        key = (tuple(obs.shape), deterministic, positions)
        if key not in self._act_graphs:
            own = [torch.Generator(device=self.template.obs_loc.device) for _ in positions]
            graph = CapturedStep(self._batched_act(positions, deterministic, own), generators=own)
            self._act_graphs[key] = (graph, own)
        graph, own = self._act_graphs[key]
        for mine, theirs in zip(own, generators, strict=True):
            mine.set_state(theirs.get_state())
        action = graph(TensorDict(obs=obs))["action"]
        for mine, theirs in zip(own, generators, strict=True):
            theirs.set_state(mine.get_state())
        return action


def _flat_params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


def _per_seed_state(key: str, value: object) -> bool:
    """Optimiser state entries with one value per weight (Adam's moments); ``step`` is shared."""
    return isinstance(value, torch.Tensor) and key != "step"


def _copy(value: object) -> object:
    return value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


def _copy_lrs(target: torch.optim.Optimizer, source: torch.optim.Optimizer) -> None:
    """``source``'s learning rates into ``target``: into its own tensors where they are tensors (the fast path's),
    whose addresses a compiled or captured step has read, else by assignment."""
    for g_target, g_source in zip(target.param_groups, source.param_groups, strict=True):
        if isinstance(g_target["lr"], torch.Tensor):
            with torch.no_grad():
                g_target["lr"].fill_(g_source["lr"])
        else:
            g_target["lr"] = g_source["lr"]
