"""The ``Algorithm`` contract every built-in and plugin algorithm implements.

An algorithm is an ``nn.Module`` holding its networks, plus the optimisers and schedulers that train
them. It declares its training phases as ``Stage`` objects; the Trainer runs them in order, samples
batches of the stage's size from a TorchRL replay buffer and calls ``stage.update(batch, step)``.
Nothing in here knows about the trainer, the CLI or the benchmark layer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import platform
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import torch
from tensordict import TensorDict

from offrl_zoo.errors import ConfigError
from offrl_zoo.graphs import CapturedStep, VariantGraphs
from offrl_zoo.optim import TrainableModule, make_optimizer
from offrl_zoo.spec import DataSpec

REWARD_TRANSFORMS = ("raw", "return_range", "minus_one", "dql_antmaze", "standardize")
EPISODE_SPLITS = ("gap", "fixed_1000")
SAMPLINGS = ("uniform", "shuffled")  # how a stage draws its batches (Stage.sampling)
DRAWS = ("auto", "buffer", "graph")  # who draws them (BaseConfig.draw)


@dataclass
class BaseConfig:
    """Fields every algorithm config has: how its data is prepared (docs/reference.md §1.1–1.2), and the
    speed switch.

    The data fields are applied once to the whole dataset by ``offrl_zoo.data.transforms``, never inside
    an algorithm, so that the same dataset preparation is one piece of code for every method.
    """

    # Standardise observations with the dataset's per-dimension mean/std (+ obs_norm_eps on the std).
    normalize_obs: bool = False
    obs_norm_eps: float = 1e-3
    # Reward transform: raw | return_range (r·scale/(R_max−R_min) over dataset episodes) |
    # minus_one (r−1) | dql_antmaze ((r−0.5)·4) | standardize ((r−mean)/std).
    reward_transform: str = "raw"
    return_range_scale: float = 1000.0
    # How episodes are split for return_range: gap (terminal or next_obs[i] != obs[i+1], IQL/IDQL)
    # or fixed_1000 (terminal or 1000 steps, SRPO/CORL).
    episode_split: str = "gap"
    # Clip dataset actions to ±clip_actions (IQL/IDQL use 1 − 1e−5); null leaves them as they are.
    clip_actions: float | None = None
    # Keep only the best fraction of trajectories by discounted return (CORL's "%BC"; trajectories end
    # at a terminal or after 1000 steps); 1.0 keeps everything.
    top_fraction: float = 1.0
    top_fraction_discount: float = 1.0
    # Fraction of transitions held out of training, drawn from the seed after every other transform
    # (IDQL's 95/5 split); the trainer logs ``Algorithm.validation_metrics`` on them. 0 keeps all.
    holdout_fraction: float = 0.0
    # The fast path: graph-safe optimiser steps (offrl_zoo.optim), each stage's whole update compiled as one
    # graph (torch.compile, fullgraph) and act compiled. Same maths, equal losses to float tolerance
    # (tests/test_fast_path.py, conformance check_graph_safe); off is the eager reference.
    fast: bool = False
    # On CUDA, the fast path also captures each compiled update (one per step variant) and act as CUDA graphs
    # and replays them (offrl_zoo.graphs); false keeps compile only. No effect off CUDA or without fast.
    capture: bool = True
    # Who draws each training batch (offrl_zoo.data.buffer): buffer (the trainer samples a TorchRL replay
    # buffer before each update) | graph (the update draws its own batch from the dataset on the device, so on
    # the fast path the draw is compiled and captured with the step; one seed at a time) | auto (graph where
    # the update is captured, i.e. CUDA with fast and capture and no seed batch, else buffer).
    # The two draw different rows from different generators: same distribution, other batches.
    draw: str = "auto"
    # On CUDA, float32 matmuls on TensorFloat-32 tensor cores (inputs rounded to a 10-bit mantissa, float32
    # accumulation): several times the float32 matmul rate on Ampere and later GPUs, other rounding than the
    # official codes' float32. Process-wide, set when an algorithm is built on CUDA (false sets full float32,
    # PyTorch's default); no effect off CUDA.
    tf32: bool = False
    # On a CPU with bfloat16 matrix units (Intel AMX or AVX512-BF16), float32 matmuls through oneDNN with
    # inputs rounded to bfloat16 (8-bit mantissa) and float32 sums: the CPU's counterpart of tf32, coarser
    # rounding than TF32, other rounding than the official codes' float32. Process-wide, set when an algorithm
    # is built on the CPU (false sets full float32); refused on a CPU without such units; no effect on CUDA.
    cpu_bf16_matmul: bool = False

    def __post_init__(self) -> None:
        check_limits(self)
        if not 0 < self.top_fraction <= 1:
            raise ValueError(f"top_fraction={self.top_fraction}: expected a value in (0, 1]")
        if not 0 <= self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction={self.holdout_fraction}: expected a value in [0, 1)")
        check_choice(self, "reward_transform", REWARD_TRANSFORMS)
        check_choice(self, "episode_split", EPISODE_SPLITS)
        check_choice(self, "draw", DRAWS)
        check_positive(self, "obs_norm_eps", "return_range_scale")
        if self.clip_actions is not None and not self.clip_actions > 0:
            raise ValueError(f"clip_actions={self.clip_actions}: expected a positive bound or null")


# Bounds of what a config value can mean, checked by name and type for every algorithm's config: beyond
# them a value is a typo or a unit slip (an extra zero, a rate in percent), never an experiment.
MAX_COUNT = 10**9  # steps, batch sizes and every other integer
MAX_WIDTH = 16_384  # a layer width (hidden, *_hidden, *_dim): a square layer of it is 1 GiB of float32
MAX_DEPTH = 1_000  # layers or residual blocks (*_layers, *_blocks)
MAX_LR = 1.0  # learning rates (lr, *_lr), with Adam or SGD
FLOAT32_MAX = 3.4028234663852886e38  # the networks compute in float32


def check_limits(cfg: Any) -> None:
    """Refuse numbers no experiment means: non-finite or beyond float32, learning rates above
    ``MAX_LR``, integers above ``MAX_COUNT``, widths above ``MAX_WIDTH``, depths above ``MAX_DEPTH``.
    Lower bounds are each config's own (``check_positive`` and the like)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, list | tuple):  # layer widths
            for i, item in enumerate(value):
                _check_limit(f.name, item, f"{f.name}[{i}]")
        else:
            _check_limit(f.name, value, f.name)


def _check_limit(key: str, value: Any, label: str) -> None:
    """``label``: how the message names the value (``hidden[1]`` for an item of ``hidden``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if key == "lr" or key.endswith("_lr"):
        if not (math.isfinite(value) and value <= MAX_LR):
            raise ValueError(f"{label}={value!r}: a learning rate must be finite and at most {MAX_LR:g}")
    elif isinstance(value, float):
        if not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
            raise ValueError(f"{label}={value!r}: expected a finite number within float32's range (|x| ≤ 3.4e38)")
    elif key == "hidden" or key.endswith(("_hidden", "_dim")):
        if not 1 <= value <= MAX_WIDTH:
            raise ValueError(f"{label}={value!r}: expected a layer width from 1 to {MAX_WIDTH}")
    elif key.endswith(("_layers", "_blocks")):
        if value > MAX_DEPTH:
            raise ValueError(f"{label}={value!r}: expected at most {MAX_DEPTH} layers")
    elif value > MAX_COUNT:
        raise ValueError(f"{label}={value!r}: expected at most 10^9")


def check_choice(cfg: Any, key: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, key)
    if value not in choices:
        raise ValueError(f"{key}={value!r}: expected one of {', '.join(choices)}")


def check_positive(cfg: Any, *keys: str) -> None:
    for key in keys:
        if not getattr(cfg, key) > 0:
            raise ValueError(f"{key}={getattr(cfg, key)!r}: expected a positive number")


def check_unit_interval(cfg: Any, *keys: str) -> None:
    for key in keys:
        if not 0 < getattr(cfg, key) < 1:
            raise ValueError(f"{key}={getattr(cfg, key)!r}: expected a value in the open interval (0, 1)")


def set_matmul_precision(device: torch.device, tf32: bool, cpu_bf16: bool = False) -> None:
    """Float32 matmuls on ``device``: on CUDA in TF32 when ``tf32``, on the CPU in bfloat16 when ``cpu_bf16``,
    else in full float32; the other device's setting is left alone. The setting is the process's (cuBLAS and
    oneDNN read it at each call, a CUDA capture keeps the one it recorded with)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
    elif device.type == "cpu":
        if cpu_bf16 and not cpu_has_bf16_matmul():
            raise ConfigError(
                "cpu_bf16_matmul=true: this CPU has no bfloat16 matrix units (Intel AMX or AVX512-BF16) for "
                "oneDNN to use; without them bfloat16 is emulated and slower than float32. Set it false."
            )
        # torch's type stubs lack the mkldnn backend's per-operation settings (torch 2.13); the attribute exists
        torch.backends.mkldnn.matmul.fp32_precision = "bf16" if cpu_bf16 else "ieee"  # type: ignore[attr-defined]


def cpu_has_bf16_matmul() -> bool:
    """Whether oneDNN runs bfloat16 matmuls natively here: x86 with AMX or AVX512-BF16 (torch's own CPU
    probes), or another architecture whose oneDNN build reports bfloat16 support (e.g. Arm BF16)."""
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return True


UpdateFn = Callable[[TensorDict, int], TensorDict]
BatchDraw = Callable[[], TensorDict]


def _drawing_own_batch(update: UpdateFn, draw: BatchDraw) -> UpdateFn:
    def draw_then_update(_: TensorDict, step: int) -> TensorDict:
        return update(draw(), step)

    return draw_then_update


ConfigT = TypeVar("ConfigT", bound=BaseConfig)


@dataclass(frozen=True)
class Stage:
    """One training phase: ``steps`` calls of ``update`` on batches of ``batch_size``.

    ``modules`` names the attributes of the algorithm that this stage changes (networks it trains and
    their target/EMA copies); everything else must stay untouched, which the conformance suite checks.
    ``sampling`` is ``uniform`` (with replacement, the default of every method here) or ``shuffled``
    (a permutation walked in order, re-shuffled each pass, as SRPO).
    ``has_policy`` says whether ``act`` is meaningful during this stage (periodic evaluation runs then).
    ``after_update(step)``, when given, runs after each ``update``, outside any compiled or captured region:
    the host-side bookkeeping of a step, i.e. LR schedulers (torch computes their rates in Python, which a
    compiled graph would freeze at its first value). ``update`` itself must stay graph-safe: no host syncs,
    no scheduler calls, optimiser steps through ``step_optimizer`` only.
    ``variant(step)``, when given, names the code path ``update`` takes at ``step`` (e.g. whether the EMA is
    due): ``update`` may read its step only through this key, since the fast path builds one graph per key
    at its first step and reuses it (``offrl_zoo.graphs``; conformance check ``check_step_variants``).
    None: ``update`` does not depend on its step.
    ``shared`` marks a stage whose result other algorithms may reuse: a dict naming what it trains and
    every setting it depends on (e.g. ``{"kind": "dtql-pretrain", "lr": 3e-4, ...}``). Two stages with
    equal ``shared`` dicts, the same prepared dataset and the same seed produce identical modules, so
    the trainer can take a finished one from its stage cache instead of training it again. The
    modules of a shared stage must be built inside ``seeded_init`` so that their initial weights
    depend only on the seed and the tag, not on what else the algorithm builds.
    """

    name: str
    steps: int
    batch_size: int
    update: UpdateFn
    modules: tuple[str, ...]
    sampling: str = "uniform"  # a config value, so a str; checked below
    has_policy: bool = True
    shared: dict[str, Any] | None = None
    after_update: Callable[[int], None] | None = None
    variant: Callable[[int], Hashable] | None = None

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"stage {self.name!r}: sampling={self.sampling!r}, expected one of {', '.join(SAMPLINGS)}")


RECOMPILE_LIMIT = 256


def compile_for_speed(fn: Callable[..., Any], fullgraph: bool = False, backend: str = "inductor") -> Callable[..., Any]:
    """``torch.compile(fn)`` with ATen's random ops kept (inductor's ``fallback_random``): the compiled
    function draws the very random numbers the eager one draws, so losses match and resume stays exact.
    ``fullgraph``: one graph or an error, never a silent graph break. Dynamo is allowed to trace
    ``torch.autograd.grad`` (``trace_autograd_ops``), which the graph-safe optimiser step calls. Both
    settings are process-wide; neither changes what eager code computes. ``backend="eager"`` traces without
    generating code (the conformance check of graph-safety uses it: same graph, seconds instead of minutes)."""
    import torch._dynamo.config
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    torch._dynamo.config.trace_autograd_ops = True
    # Dynamo compiles a method once per object it is bound to (and per branch on the step taken): a process
    # that trains several seeds one after another, or the test suite, needs more than the default 8.
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 16 * RECOMPILE_LIMIT)
    return torch.compile(fn, fullgraph=fullgraph, backend=backend)


def derived_seed(*parts: object, nbytes: int = 8) -> int:
    """A seed drawn from ``parts`` alone (SHA-256 of "p1/p2/..."), below 2⁶³; ``nbytes`` = 4 keeps it below 2³²
    (NumPy's limit). One home for every derived random stream: stage starts, shared-module init, held-out rows."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:nbytes], "little") & ((1 << 63) - 1)


@contextmanager
def seeded_init(tag: str) -> Iterator[None]:
    """Build modules from an RNG stream derived from the run seed and ``tag`` only.

    Used for the modules of shared stages: DTQL and DTQL-KL build different actors, but their
    behaviour models and critics start from the same weights for the same seed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(derived_seed(torch.initial_seed(), tag))
        yield


class Algorithm(TrainableModule, Generic[ConfigT]):
    """Base class, generic over its config: ``class IQL(Algorithm[IQLConfig])`` sets ``name`` and
    ``Config = IQLConfig`` and implements ``stages`` and ``_act``; ``self.cfg`` is then typed ``IQLConfig``.

    Contract:
    - ``__init__(spec, cfg, device)`` builds networks from ``spec`` only (nothing task-specific);
    - ``stages()`` lists the phases; each ``update(batch, step)`` does one gradient step and returns a
      TensorDict of 0-d tensors without synchronising with the host (no ``.item()``, no branching on
      tensor values; branching on the integer ``step`` is fine);
    - ``act(obs, deterministic)`` is batched over observations and takes raw (unnormalised) ones;
    - optimisers go in ``self.optimizers``, schedulers in ``self.schedulers``: ``training_state()`` then holds
      networks, targets, optimisers, schedulers, enough for exact resume (``state_dict()`` is the weights alone).
    """

    name: ClassVar[str]
    Config: ClassVar[type[BaseConfig]]  # the config dataclass; equals the class's type argument
    # One line saying where the algorithm comes from; shown by `offrl-zoo list`.
    summary: ClassVar[str] = ""
    # Whether act(deterministic=True) on a batch equals act row by row (False for selection rules
    # that draw random candidates even in deterministic mode).
    deterministic_act_is_exact: ClassVar[bool] = True
    # False for a deterministic actor: act ignores ``deterministic``, so no evaluation samples.
    samples_actions: ClassVar[bool] = True
    # Tasks the official code gives no settings for: fnmatch pattern ('|' for alternatives) ->
    # (reason, key). Resolving such a task fails with the reason unless the user sets ``key``
    # (user YAML or command line), so a missing official value is never silently guessed.
    unsupported_tasks: ClassVar[dict[str, tuple[str, str]]] = {}
    # Config keys that only choose how act picks an action from the trained networks (candidates, selection
    # rule): `offrl-zoo eval RUN key=value` may change them to evaluate a checkpoint under another rule.
    acting_keys: ClassVar[tuple[str, ...]] = ()
    cfg: ConfigT
    # Buffers registered in __init__: the observation normalisation and the action box.
    obs_loc: torch.Tensor
    obs_scale: torch.Tensor
    action_low: torch.Tensor
    action_high: torch.Tensor

    def __init__(self, spec: DataSpec, cfg: ConfigT, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.spec = spec
        self.cfg = cfg
        self.device = torch.device(device)
        set_matmul_precision(self.device, cfg.tf32, cfg.cpu_bf16_matmul)
        loc = torch.zeros(spec.obs_dim) if spec.obs_loc is None else torch.tensor(spec.obs_loc)
        scale = torch.ones(spec.obs_dim) if spec.obs_scale is None else torch.tensor(spec.obs_scale)
        self.register_buffer("obs_loc", loc.float())
        self.register_buffer("obs_scale", scale.float())
        low, high = spec.action_bounds()
        self.register_buffer("action_low", low)
        self.register_buffer("action_high", high)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self._compiled_act: Callable[[torch.Tensor, bool], torch.Tensor] | None = None
        self._act_graphs: dict[tuple, CapturedStep] = {}  # captured act per (obs shape, deterministic)

    def __getstate__(self) -> dict[str, Any]:
        """Copies (``copy.deepcopy``, pickling) leave out the compiled act and the captured graphs: those are
        bound to this instance's tensors, and a CUDA graph cannot be copied."""
        state = dict(self.__dict__)
        state["_compiled_act"], state["_act_graphs"] = None, {}
        return state

    def make_optimizer(
        self, params: Any, optimizer: type[torch.optim.Optimizer] = torch.optim.Adam, **kwargs: Any
    ) -> torch.optim.Optimizer:
        """``optimizer(params, **kwargs)`` (Adam or AdamW), graph-safe on the fast path (``offrl_zoo.optim``)."""
        return make_optimizer(params, self.cfg.fast, optimizer, **kwargs)

    def captures(self) -> bool:
        """Whether updates and act run as captured CUDA graphs (``fast`` and ``capture`` on a CUDA device)."""
        return self.cfg.fast and self.cfg.capture and self.device.type == "cuda"

    def batch_draw(self, stage: Stage, seed_batch: bool = False) -> str:
        """Who draws ``stage``'s batches under config ``draw`` (``offrl_zoo.data.buffer``): ``"graph"`` (the update
        itself) or ``"buffer"`` (the trainer's replay buffer). ``seed_batch``: trained in a batch of seeds, which
        draws each seed's batches from its own buffer."""
        draw = self.cfg.draw
        if draw == "auto":
            return "graph" if self.captures() and not seed_batch else "buffer"
        if draw == "graph" and seed_batch:
            raise ConfigError(
                f"draw=graph: {self.name}'s update draws its own batches one seed at a time, and these seeds are "
                "batched (--vectorize-seeds), each drawing from its own buffer. Use draw=auto or draw=buffer"
            )
        return draw

    def compiled_update(self, stage: Stage, backend: str = "inductor", draw: BatchDraw | None = None) -> UpdateFn:
        """What the trainer runs once per step of ``stage``: ``stage.update`` (on the fast path compiled as one
        whole graph with ``backend``, one per step variant, captured on CUDA), then ``stage.after_update``
        outside it. With ``draw``, each step first draws its batch with it (the batch it is given, ``NO_BATCH``,
        is ignored): before the compiled update, inside the captured graph. Compiling ``stage.update`` alone
        keeps Dynamo's cache per update method rather than on one wrapper shared by every stage."""
        update: UpdateFn = stage.update
        if self.cfg.fast:
            update = compile_for_speed(stage.update, fullgraph=True, backend=backend)
        if draw is not None:
            update = _drawing_own_batch(update, draw)
        if self.cfg.fast:
            update = VariantGraphs(update, stage.variant, capture=self.captures())
        after = stage.after_update
        if after is None:
            return update

        def step(batch: TensorDict, index: int) -> TensorDict:
            metrics = update(batch, index)
            after(index)
            return metrics

        return step

    def scheduler_steps(self, *keys: str) -> Callable[[int], None] | None:
        """A stage's ``after_update`` that steps the schedulers ``keys`` (all when none is named) once per update;
        None when there is none to step."""
        schedulers = [s for k, s in self.schedulers.items() if not keys or k in keys]
        if not schedulers:
            return None

        def step_schedulers(step: int) -> None:
            for scheduler in schedulers:
                scheduler.step()

        return step_schedulers

    # -- to implement -----------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def _act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions for a batch of *normalised* observations, shape (B, action_dim)."""
        raise NotImplementedError

    def selection_rule(self, deterministic: bool) -> str:
        """How ``act`` picks an action, stamped next to every evaluation score."""
        return "deterministic policy output" if deterministic or not self.samples_actions else "policy sample"

    def validation_metrics(self, batch: TensorDict) -> TensorDict | None:
        """Losses on a batch of held-out transitions (``holdout_fraction`` > 0), logged as ``val/<key>``.

        Called by the trainer at log time, in eval mode, without gradients and with its own random
        stream (training is unaffected); returns 0-d tensors, or None when the algorithm has none.
        """
        return None

    # -- provided ---------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Batched actions for raw observations ``obs`` of shape (B, obs_dim), within the action bounds."""
        obs = torch.as_tensor(obs, dtype=torch.float32, device=self.obs_loc.device)
        if obs.ndim != 2 or obs.shape[-1] != self.spec.obs_dim:
            raise ValueError(f"act: expected observations of shape (B, {self.spec.obs_dim}), got {tuple(obs.shape)}")
        was_training = self.training
        self.eval()  # dropout etc. off while acting
        try:
            if not self.cfg.fast:
                return self._bounded_act(obs, deterministic)
            if self._compiled_act is None:
                self._compiled_act = compile_for_speed(self._bounded_act, fullgraph=True)
            if not self.captures():
                return self._compiled_act(obs, deterministic)
            key = (tuple(obs.shape), deterministic)
            if key not in self._act_graphs:
                act, det = self._compiled_act, deterministic
                self._act_graphs[key] = CapturedStep(lambda td: TensorDict(action=act(td["obs"], det)))
            return self._act_graphs[key](TensorDict(obs=obs))["action"]
        finally:
            self.train(was_training)

    def _bounded_act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        action = self._act((obs - self.obs_loc) / self.obs_scale, deterministic)
        return torch.maximum(torch.minimum(action, self.action_high), self.action_low)
