"""Policy export: a trained policy as one self-contained file that runs without offrl-zoo.

``export_policy`` writes what ``Algorithm.act(obs, deterministic)`` computes, raw observations (B, obs_dim)
float32 in and actions (B, action_dim) out: the observation normalisation, the algorithm's selection rule
(candidate sampling and critic scoring, denoising loops) and the clip to the action box. TorchScript files
load with ``torch.jit.load``, ONNX files with ONNX Runtime; ``FILE.json`` next to the file describes it.
``ExportedPolicy`` loads such a file back with the part of the ``Algorithm`` interface that ``Evaluator``
uses, so ``offrl-zoo eval --policy`` scores it with a run's protocol.

Both formats record one trace of the eager ``_act`` at a batch of 2, with the batch size kept symbolic.
Python branches on sizes are fixed by that trace: the one in ``offrl_zoo.nets.activations`` picks Mish's
one-exp formula for the traced sizes, where ``act`` switches to ``aten::mish`` above 2²² elements (the
two agree to 2e-6). Random draws stay random ops in the graph: a TorchScript policy draws from torch's
global generator in the order ``act`` does, so seeding torch reproduces ``act``; ONNX Runtime draws from
its own generator, so an ONNX policy whose rule draws random numbers samples the same distribution but
not the same numbers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from offrl_zoo import __version__
from offrl_zoo.algorithm import Algorithm
from offrl_zoo.envs.tasks import Task
from offrl_zoo.errors import ConfigError
from offrl_zoo.io import atomic_write, write_json

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}  # format -> default file suffix
ONNX_INPUT, ONNX_OUTPUT = "observation", "action"
ONNX_NEEDS = "--format onnx needs onnx, onnxscript and onnxruntime: pip install 'offrl-zoo[onnx]'"
CHECK_ATOL = 1e-5  # exported policy vs the eager module, on rules that draw no random numbers
_EXAMPLE_ROWS = 2  # the traced batch: torch.export would make a batch of 1 a static size
_PROBE_ROWS = 3  # the export check's batch: not the traced one, so a baked batch size fails it
# TorchScript (aten) and ONNX ops that draw random numbers. Dropout is absent: a policy is exported in
# eval mode, where dropout is the identity.
_TORCH_RANDOM_OPS = frozenset(
    {
        *("rand", "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm", "multinomial"),
        *("normal", "bernoulli", "poisson", "uniform_", "normal_", "exponential_", "cauchy_", "geometric_"),
        *("log_normal_", "random_", "bernoulli_"),
    }
)
_ONNX_RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)

Runner = Callable[[torch.Tensor], torch.Tensor]
# What to do next, shown after the one-line refusal (ConfigError's own hint is about algorithm configs).
HINT_TRACEABLE = "an exported _act takes no .item() and no Python branch on tensor values (CONTRIBUTING.md)"
HINT_EXPORT = "`offrl-zoo export RUN --format torchscript|onnx` writes a policy file and its FILE.json"
HINT_ENV = "see `offrl-zoo eval --help`"


def refusal(message: str, hint: str) -> ConfigError:
    """A one-line ``ConfigError`` with its own hint."""
    err = ConfigError(message)
    err.hint = hint
    return err


class PolicyModule(nn.Module):
    """``algo.act(obs, deterministic)`` as a module: normalise, the algorithm's ``_act``, clip.

    Calls the eager ``_act``: the compiled one of the fast path (``cfg.fast``) cannot be traced.
    """

    def __init__(self, algo: Algorithm, deterministic: bool) -> None:
        super().__init__()
        self.algo = algo
        self.deterministic = deterministic

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        algo = self.algo
        action = algo._act((obs - algo.obs_loc) / algo.obs_scale, self.deterministic)
        return torch.maximum(torch.minimum(action, algo.action_high), algo.action_low)


# -- writing ----------------------------------------------------------------------------------------
def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def require_onnx() -> None:
    """Refuse ONNX export or evaluation in one line when the ``onnx`` extra is not installed."""
    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxscript", "onnxruntime")):
        raise refusal(ONNX_NEEDS, "--format torchscript needs nothing more")


def export_run(
    run_dir: str | Path, fmt: str, out: str | Path | None = None, stochastic: bool = False
) -> tuple[Path, dict[str, Any]]:
    """Export a run's policy (its checkpoint) to ``out`` (default ``RUN/policy.pt|.onnx``); returns the file
    and its sidecar."""
    from offrl_zoo.train.run import load_run

    _check_format(fmt)
    if fmt == "onnx":
        require_onnx()  # before loading the run
    algo, task, record = load_run(run_dir, "cpu")
    path = Path(out) if out is not None else Path(run_dir) / f"policy{FORMATS[fmt]}"
    request = record["request"]
    run = {
        "task": task.id,
        "env_id": task.env_id,
        "source_run": str(Path(run_dir).resolve()),
        "dataset_sha256": record.get("dataset_sha256"),
        "run_seed": request["seed"],
        "eval_episodes": request.get("eval_episodes"),
    }
    return path, export_policy(algo, fmt, path, deterministic=not stochastic, run=run)


def export_policy(
    algo: Algorithm,
    fmt: str,
    path: str | Path,
    deterministic: bool = True,
    run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``algo``'s action selection to ``path`` in format ``fmt`` and its sidecar to ``path.json``.

    ``run``: what the sidecar says of the run the policy comes from (task, env_id, source_run,
    dataset_sha256, run_seed, eval_episodes); each is null when not given. Returns the sidecar. The
    exported graph is checked against the eager module on a batch of another size before anything is written.
    """
    _check_format(fmt)
    if fmt == "onnx":
        require_onnx()
    if algo.obs_loc.device.type != "cpu":
        raise refusal(
            f"export: {algo.name} is on {algo.obs_loc.device}", "move it to the CPU: exported policies run there"
        )
    path = Path(path)
    was_training = algo.training
    module = PolicyModule(algo, deterministic).eval()  # dropout off, as in act
    try:
        with torch.no_grad(), _quiet_exporters():
            example = algo.obs_loc.expand(_EXAMPLE_ROWS, -1).clone()
            data, details = (_torchscript if fmt == "torchscript" else _onnx)(module, example)
    finally:
        algo.train(was_training)
    atomic_write(path, lambda fh: fh.write(data))
    sidecar = _sidecar(algo, fmt, path, deterministic, run or {}) | details
    write_json(sidecar_path(path), sidecar)
    return sidecar


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise refusal(f"format {fmt!r}: expected one of {', '.join(FORMATS)}", HINT_EXPORT)


def _sidecar(algo: Algorithm, fmt: str, path: Path, deterministic: bool, run: dict[str, Any]) -> dict[str, Any]:
    spec = algo.spec
    run_keys = ("task", "env_id", "source_run", "dataset_sha256", "run_seed", "eval_episodes")
    return {
        "format": fmt,
        "file": path.name,
        "algorithm": algo.name,
        "selection_rule": algo.selection_rule(deterministic),
        "deterministic": deterministic,
        "observation": {
            "shape": ["batch", spec.obs_dim],
            "dtype": "float32",
            "normalised_inside": spec.obs_loc is not None,  # raw observations go in either way
        },
        "action": {
            "shape": ["batch", spec.action_dim],
            "dtype": "float32",
            "low": algo.action_low.tolist(),
            "high": algo.action_high.tolist(),
            "clipped_inside": True,
        },
        **{key: run.get(key) for key in run_keys},
        "torch": torch.__version__,
        "offrl_zoo": __version__,
    }


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence what the exporters say about matters checked here: the tracer's warnings on fixed Python
    branches and non-reproducible nodes (the export check compares outputs instead), the deprecation of
    TorchScript, and torch.onnx's log lines about optional packages."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated")
            warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
            yield
    finally:
        onnx_log.setLevel(level)


def _probe(algo: Algorithm) -> torch.Tensor:
    """Raw observations around the normalisation centre, from a fixed stream."""
    g = torch.Generator().manual_seed(0)
    return algo.obs_loc + algo.obs_scale * torch.randn(_PROBE_ROWS, algo.spec.obs_dim, generator=g)


def _torchscript(module: PolicyModule, example: torch.Tensor) -> tuple[bytes, dict[str, Any]]:
    # check_trace would run the trace again and compare: rules that draw random numbers never pass it.
    traced = torch.jit.trace(module, example, check_trace=False)
    frozen = torch.jit.freeze(traced)  # weights become constants; networks _act never calls are dropped
    buffer = io.BytesIO()
    torch.jit.save(frozen, buffer)
    loaded = torch.jit.load(io.BytesIO(buffer.getvalue()))
    random = _graph_draws(loaded.inlined_graph)
    _check(module, loaded, random, same_draws=True)
    return buffer.getvalue(), {"draws_random_numbers": random}


def _graph_draws(graph: Any) -> bool:
    """Whether a TorchScript graph (blocks included) holds an op that draws random numbers."""

    def nodes(block: Any) -> Iterator[Any]:
        for node in block.nodes():
            yield node
            for inner in node.blocks():
                yield from nodes(inner)

    return any(n.kind().startswith("aten::") and n.kind()[6:] in _TORCH_RANDOM_OPS for n in nodes(graph))


def _onnx(module: PolicyModule, example: torch.Tensor) -> tuple[bytes, dict[str, Any]]:
    import onnx

    try:
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes={"obs": {0: torch.export.Dim("batch")}},
            dynamo=True,
            verbose=False,
        )
    except torch.onnx.OnnxExporterError as err:
        reason = str(err).strip().splitlines()[0]
        raise refusal(
            f"{module.algo.name}: the ONNX exporter cannot express its action selection ({reason}); "
            "export --format torchscript instead",
            HINT_TRACEABLE,
        ) from err
    assert program is not None  # dynamo export without a file name returns the program
    model = program.model_proto
    data = model.SerializeToString()
    random = _onnx_draws(model)
    session = onnx_session(data)
    _check(module, _onnx_runner(session), random, same_draws=False)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    details = {"draws_random_numbers": random, "onnx_opset": opset, "input": ONNX_INPUT, "output": ONNX_OUTPUT}
    return data, details | {"onnx": onnx.__version__}


def _onnx_draws(model: Any) -> bool:
    """Whether an ONNX model (subgraphs and local functions included) holds an op that draws random numbers."""
    import onnx

    def nodes(graph: Any) -> Iterator[Any]:
        for node in graph.node:
            yield node
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from nodes(attr.g)
                for sub in attr.graphs:
                    yield from nodes(sub)

    functions = [n for f in model.functions for n in f.node]
    return any(n.op_type in _ONNX_RANDOM_OPS for n in [*nodes(model.graph), *functions])


def _check(module: PolicyModule, exported: Runner, random: bool, same_draws: bool) -> None:
    """Refuse an export whose policy differs from the eager module on a batch of another size than the
    traced one. With ``same_draws`` (TorchScript) both draw from torch's generator, seeded alike, so even
    random rules must agree; otherwise random rules can only be checked for shape and bounds."""
    algo = module.algo
    obs = _probe(algo)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        expected = module(obs)
        torch.manual_seed(0)
        got = exported(obs)
    what = f"{algo.name}: nothing written, the exported policy"
    if got.shape != expected.shape:
        raise refusal(f"{what} returned shape {tuple(got.shape)} for {tuple(obs.shape)}", HINT_TRACEABLE)
    if random and not same_draws:
        inside = (got >= algo.action_low).all() and (got <= algo.action_high).all()
        if not (torch.isfinite(got).all() and inside):
            raise refusal(f"{what} returned actions outside the action box", HINT_TRACEABLE)
        return
    diff = (got - expected).abs().max().item()
    if not diff <= CHECK_ATOL:
        raise refusal(f"{what} differs from act by {diff:.3g} (tolerance {CHECK_ATOL:g})", HINT_TRACEABLE)


# -- reading ----------------------------------------------------------------------------------------
def onnx_session(model: bytes | Path, seed: int | None = None) -> Any:
    """An ONNX Runtime CPU session with torch's thread count (the CLI's and the tests' thread budget).

    ``seed``: ONNX Runtime's global seed, which its random ops read when the session is made, so that the
    session's random draws repeat (they are ONNX Runtime's, not torch's)."""
    import onnxruntime as ort

    if seed is not None:
        ort.set_seed(seed)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _onnx_runner(session: Any) -> Runner:
    def run(obs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: obs.numpy()})[0])

    return run


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of the exported policy ``path``, checked for the fields evaluation reads."""
    side = sidecar_path(path)
    if not Path(path).is_file():
        raise refusal(f"{path}: no such policy file", HINT_EXPORT)
    try:
        sidecar = json.loads(side.read_text())
        fmt, obs_dim = sidecar["format"], int(sidecar["observation"]["shape"][1])
        rule, deterministic = sidecar["selection_rule"], sidecar["deterministic"]
    except FileNotFoundError:
        raise refusal(
            f"{path}: no {side.name} next to it; evaluation reads the policy's format, task and selection rule "
            "from the sidecar that `offrl-zoo export` writes",
            HINT_EXPORT,
        ) from None
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise refusal(f"{side}: not a policy sidecar written by `offrl-zoo export` ({err!r})", HINT_EXPORT) from None
    if fmt not in FORMATS or not isinstance(rule, str) or not isinstance(deterministic, bool) or obs_dim < 1:
        raise refusal(f"{side}: not a policy sidecar written by `offrl-zoo export`", HINT_EXPORT)
    return sidecar


class ExportedPolicy:
    """An exported policy file with what ``Evaluator`` uses of an ``Algorithm``: ``act``,
    ``selection_rule`` and ``obs_loc`` (whose device says which generator evaluation seeds).

    A TorchScript policy draws from torch's generator, which the evaluator seeds; ``seed`` seeds an ONNX
    policy's own draws (``onnx_session``)."""

    def __init__(self, path: str | Path, seed: int | None = None) -> None:
        self.path = Path(path)
        self.seed = seed
        self.sidecar = read_sidecar(self.path)
        self.format: str = self.sidecar["format"]
        self.deterministic: bool = self.sidecar["deterministic"]
        self.obs_dim = int(self.sidecar["observation"]["shape"][1])
        self.obs_loc = torch.zeros(self.obs_dim)  # exported policies run on the CPU
        self._run = self._load()

    def _load(self) -> Runner:
        what = "a TorchScript" if self.format == "torchscript" else "an ONNX"
        try:
            if self.format == "onnx":
                require_onnx()
                return _onnx_runner(onnx_session(self.path, self.seed))
            with _quiet_exporters():
                module = torch.jit.load(str(self.path), map_location="cpu")
        except ConfigError:
            raise
        except Exception as err:  # whatever the loader of a damaged or foreign file raises
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise refusal(f"{self.path}: cannot load it as {what} policy ({reason})", HINT_EXPORT) from None
        return module

    def selection_rule(self, deterministic: bool) -> str:
        self._check_mode(deterministic)
        return self.sidecar["selection_rule"]

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions for raw observations of shape (B, obs_dim), as the exporting run's ``act``."""
        self._check_mode(deterministic)
        obs = torch.as_tensor(obs, dtype=torch.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise refusal(
                f"{self.path}: the policy takes observations of shape (B, {self.obs_dim}), got {tuple(obs.shape)}",
                "evaluate it in an env of its task (--env)",
            )
        return self._run(obs)

    def _check_mode(self, deterministic: bool) -> None:
        if deterministic != self.deterministic:
            rule = "deterministic" if self.deterministic else "stochastic (--stochastic)"
            raise refusal(f"{self.path}: exported with the {rule} rule; export it again for the other", HINT_EXPORT)


def policy_task(sidecar: dict[str, Any], env: str | None = None) -> Task:
    """Where ``eval --policy`` runs: ``env``, a registered task id (normalised scores) or a Gymnasium env
    id (raw returns); by default the policy's task, or its env when that task is not registered (a run
    on ``--dataset``)."""
    from offrl_zoo.envs import all_tasks, get_task

    name = env or sidecar.get("task")
    if name is not None and name in all_tasks():
        return get_task(name)
    if env is None:
        name = sidecar.get("env_id")
    if name is None:
        raise refusal("the policy's sidecar names no task or env: give --env TASK_OR_ENV_ID", HINT_ENV)
    return env_task(name)


def env_task(env_id: str) -> Task:
    """An unregistered task evaluated in the Gymnasium env ``env_id``, without reference scores."""
    import gymnasium as gym

    if env_id.startswith("minari:"):  # the env recorded in a Minari dataset
        from offrl_zoo.data.loading import custom_task

        return custom_task(env_id, None)
    try:
        horizon = gym.spec(env_id).max_episode_steps or 1000
    except gym.error.Error as err:
        raise refusal(
            f"--env {env_id!r}: neither a registered task (`offrl-zoo list tasks`) nor a Gymnasium env id ({err})",
            HINT_ENV,
        ) from None
    return Task(
        id=env_id,
        env_id=env_id,
        horizon=horizon,
        ref_min=None,
        ref_max=None,
        eval_episodes=10,
        source="env",
        source_id=env_id,
        note="Gymnasium env given by --env; no reference scores, raw returns only",
    )
