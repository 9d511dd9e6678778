"""Random command lines for train, compare, data and eval, built from valid and broken tokens: each one is
refused in one line with exit code 2 that names a broken token, or, with no broken token, accepted and
carried out as asked. The commands run in-process and stop where their real work would start (training,
the sweep's estimate and runs, dataset generation), so that hundreds of them take seconds."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from _cli import TASK, TINY_RUN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offrl_zoo.cli import main

TRIED = {"command lines": 0, "with a broken token": 0}
CUDA = torch.cuda.is_available()


class Accepted(BaseException):
    """Raised where a command's real work would start. A BaseException, which the CLI's error boundary
    lets through, as it lets Ctrl-C."""

    def __init__(self, **seen: Any) -> None:
        super().__init__()
        self.seen = seen


@dataclass(frozen=True)
class Part:
    """Tokens of a command line; a broken part's refusal names one of ``names``; an accepted command must
    pass ``check`` on what reached the work (the run request, its config, its directory)."""

    tokens: tuple[str, ...]
    broken: bool = False
    names: tuple[str, ...] = ()
    check: Callable[[dict], bool] | None = None


def ok(*tokens: str, check: Callable[[dict], bool] | None = None) -> Part:
    return Part(tokens, check=check)


def bad(*tokens: str, names: tuple[str, ...] = ()) -> Part:
    return Part(tokens, broken=True, names=names or tokens[-1:])


@dataclass(frozen=True)
class Opt:
    """One slot of a command line: absent (unless ``required``), one of its valid parts or a broken one."""

    valid: tuple[Part, ...] = ()
    broken: tuple[Part, ...] = ()
    required: bool = False


def option(flag: str, valid: dict[str, Any], broken: list[str], seen: Callable[[dict], Any] | None = None) -> Opt:
    """``flag VALUE``: a valid value, which the accepted command must carry (``seen``), or a broken one."""
    good = [ok(flag, text, check=None if seen is None else (lambda s, v=v: seen(s) == v)) for text, v in valid.items()]
    return Opt(tuple(good), tuple(bad(flag, text, names=(flag, text)) for text in broken))


def flag(name: str, seen: Callable[[dict], Any] | None = None) -> Opt:
    return Opt((ok(name, check=None if seen is None else (lambda s: bool(seen(s)))),))


def either(sampled: str, deterministic: str, seen: Callable[[dict], Any]) -> Opt:
    """Two exclusive flags: one of them, or both (refused)."""
    return Opt(
        (ok(sampled, check=lambda s: seen(s) is False), ok(deterministic, check=lambda s: seen(s) is True)),
        (bad(sampled, deterministic, names=(sampled, deterministic)),),
    )


DEFECTS = st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3])  # a third of the lines are valid throughout


@st.composite
def line(draw, opts: list[Opt], fixed: int = 1) -> list[Part]:
    """One part per slot, then 0-3 slots made broken; the first ``fixed`` slots keep their place
    (positionals), the rest come in any order."""
    parts = [
        draw(st.sampled_from(o.valid))
        if o.required
        else draw(st.none() | st.sampled_from(o.valid))
        if o.valid
        else None
        for o in opts
    ]
    breakable = [i for i, o in enumerate(opts) if o.broken]
    for _ in range(draw(DEFECTS) if breakable else 0):
        i = draw(st.sampled_from(breakable))
        parts[i] = draw(st.sampled_from(opts[i].broken))
    head, tail = parts[:fixed], [p for p in parts[fixed:] if p]
    return [p for p in head if p] + draw(st.permutations(tail))


def request(s: dict) -> Any:
    return s["request"]


def config(s: dict) -> Any:
    return s["config"]


EVERY, NOT_EVERY = {"1": 1, "5000": 5000}, ["0", "-1", "1.5", "ten"]
DEVICE = option(
    "--device",
    {"cpu": "cpu", **({"cuda": "cuda"} if CUDA else {})},
    ["tpu", "gpu", "CPU", "cuda:x", "cuda:99", *([] if CUDA else ["cuda"])],
)
THREADS = option("--threads", {"1": 1, "2": 2}, ["0", "1025", "many"])
UNKNOWN = Opt(broken=(bad("--bogus"), bad("--stepz", names=("--stepz",)), bad("-x")))
OVERRIDES = [  # key=value items valid for bc, iql and td3bc, with what the config then holds
    Opt(
        (
            ok("hidden=[16]", check=lambda s: config(s).hidden == [16]),
            ok("hidden=[8,8]", check=lambda s: config(s).hidden == [8, 8]),
        )
    ),
    Opt((ok("batch_size=64", check=lambda s: config(s).batch_size == 64),)),
    Opt((ok("normalize_obs=false", check=lambda s: config(s).normalize_obs is False),)),
    Opt((ok("holdout_fraction=0.1", check=lambda s: config(s).holdout_fraction == 0.1),)),
    Opt(
        broken=(
            bad("hiden=[16]", names=("hiden",)),
            bad("hidden=[64,"),
            bad("hidden=[-1]", names=("hidden",)),
            bad("batch_size=x", names=("batch_size",)),
            bad("steps=99999999999999999999", names=("steps",)),
            bad("holdout_fraction=nan", names=("holdout_fraction",)),
            bad("top_fraction=0", names=("top_fraction",)),
            bad("normalize_obs=maybe", names=("normalize_obs",)),
            bad("=3"),
            bad("lr=1e300", names=("lr",)),
        )
    ),
]
TRAIN = [
    Opt((ok("bc"), ok("iql"), ok("td3bc")), (bad("iqll"), bad("dqn"), bad("BC")), required=True),
    Opt(
        (ok("--task", TASK), ok("--task", "toy-25_gaussian-far")),
        (
            bad("--task", "toy-25_gaussian-nearr"),
            bad("--task", "hopper-medium"),
            bad("--task", "../../etc/passwd"),
            bad(names=("--task",)),
        ),
        required=True,
    ),
    option("--seed", {"0": 0, "7": 7, "4294967295": 2**32 - 1}, ["-1", "4294967296", "x"], lambda s: request(s).seed),
    option("--seeds", {"1": 1, "2": 2, "3": 3}, ["0", "10001", "x"]),
    flag("--vectorize-seeds"),
    Opt((ok("--run-dir", "{ex}/run", check=lambda s: s["run_dir"].name == "run"),)),
    option(
        "--steps",
        {"1": 1, "5": 5, "1_000": 1000, "1000000000": 10**9},
        ["0", "-3", "1e3", "x", "1000000001", "99999999999999999999"],
        lambda s: request(s).steps,
    ),
    option(
        "--device",
        {"cpu": "cpu"},
        ["tpu", "gpu", "cuda:x", *([] if CUDA else ["cuda", "cuda:99"])],
        lambda s: request(s).device,
    ),
    option("--eval-every", EVERY, NOT_EVERY, lambda s: request(s).eval_every),
    option("--log-every", EVERY, NOT_EVERY, lambda s: request(s).log_every),
    option("--checkpoint-every", EVERY, NOT_EVERY, lambda s: request(s).checkpoint_every),
    option("--eval-episodes", {"1": 1, "100000": 100000}, ["0", "100001", "x"], lambda s: request(s).eval_episodes),
    THREADS,
    option(
        "--transitions",
        {"qlearning": "qlearning", "next_observations": "next_observations"},
        ["sarsa"],
        lambda s: request(s).transitions,
    ),
    option("--data-source", {"auto": "auto", "generated": "generated"}, ["s3"], lambda s: request(s).data_source),
    option("--preset", {}, ["quik"]),
    option(
        "--config",
        {"{files}/good.yaml": 0.5},
        ["{files}/bad-yaml.yaml", "{files}/unknown-key.yaml", "{files}/missing.yaml"],
        lambda s: config(s).top_fraction,
    ),
    flag("--offline", lambda s: not request(s).download),
    flag("--fast", lambda s: config(s).fast),
    flag("--no-progress"),
    either("--stochastic-eval", "--deterministic-eval", lambda s: request(s).deterministic_eval),
    UNKNOWN,
    *OVERRIDES,
]
COMPARE = [
    Opt((ok("bc"), ok("td3bc")), (bad("iqll"),), required=True),
    Opt((ok("td3bc"),), (bad("dqn"),)),
    Opt(
        (ok("--suite", "toy"), ok("--tasks", TASK), ok("--tasks", TASK, "toy-25_gaussian-far")),
        (
            bad("--suite", "toyy"),
            bad("--tasks", "nope-v0"),
            bad("--suite", "toy", "--tasks", TASK, names=("--tasks", "--suite")),
            bad(names=("--suite",)),
        ),
        required=True,
    ),
    option("--seeds", {"1": 1, "2": 2}, ["0", "x", "10001"]),
    option("--budget", {"quick": 0, "paper": 0, "60": 0}, ["fast", "0", "-5", "99999999999999999999"]),
    option("--jobs", {"1": 1, "2": 2}, ["0", "5000"]),
    THREADS,
    option("--eval-every", EVERY, NOT_EVERY),
    option("--eval-episodes", {"1": 1}, ["0", "100001"]),
    DEVICE,
    option("--executor", {"local": 0, "ray": 0}, ["slurm"]),
    option("--data-source", {"auto": 0, "generated": 0}, ["s3"]),
    *(flag(f) for f in ("--yes", "--dry-run", "--no-estimate", "--vectorize-seeds", "--fast")),
    UNKNOWN,
    *OVERRIDES,
]
CACHE = Opt((ok("--cache-dir", "{ex}/cache"),))
FILES = (
    (ok("{files}/valid.hdf5"),),
    (bad("{files}/text.hdf5", names=("text.hdf5",)), bad("{files}/missing.hdf5", names=("missing.hdf5",))),
)
DATA = {
    "verify": [Opt(*FILES, required=True), option("--env", {"Hopper-v5": 0}, ["Walker2d-v5", "Nope-v0"])],
    "info": [Opt(*FILES, required=True)],
    "import": [
        Opt(*FILES, required=True),
        option("--task", {"hopper-medium-v2": 0}, ["walker2d-medium-v2", "hoper-medium-v2"]),
    ],
    "make": [
        Opt(
            (ok("all"), ok("hopper-medium-v2"), ok("walker2d-random-v2"), ok("hopper-medium-v2", "walker2d-random-v2")),
            (bad("hopper-mediun-v2"), bad(TASK), bad("all", "hopper-medium-v2", names=("'all'",))),
            required=True,
        ),
        option("--size", {"1000": 0}, ["0", "x"]),
        option("--seed", {"3": 0}, ["-1"]),
        flag("--force"),
    ],
}
EVAL = [
    Opt(
        (ok("{run}"),),
        (bad("{files}/missing-run", names=("missing-run",)), bad("{files}", names=("not a run directory",))),
        required=True,
    ),
    option("--episodes", {"1": 1, "2": 2}, ["0", "x", "100001"], lambda s: s["protocol"]["episodes"]),
    option("--seed", {"0": 0, "5": 5}, ["-1", "x"]),
    DEVICE,
    either("--stochastic", "--deterministic", lambda s: s["protocol"]["deterministic"]),
    UNKNOWN,
]


@st.composite
def train_lines(draw) -> list[Part]:
    parts = draw(line(TRAIN))
    return parts + _conflicts(parts)


def _conflicts(parts: list[Part]) -> list[Part]:
    """Valid tokens that are refused together, as zero-token broken parts."""
    given = {p.tokens[0]: p.tokens[1:] for p in parts if p.tokens and not p.broken}
    seeds, first = int(given.get("--seeds", ["1"])[0]), int(given.get("--seed", ["0"])[0])
    out = []
    if "--run-dir" in given and (seeds > 1 or "--vectorize-seeds" in given):
        out.append(bad(names=("--run-dir",)))
    if first + seeds - 1 >= 2**32:
        out.append(bad(names=("2**32",)))
    return out


@st.composite
def data_lines(draw) -> list[Part]:
    action = draw(st.sampled_from([*DATA, "mkae"]))
    cache = draw(line([CACHE]))
    if action == "mkae":
        return [*cache, bad("mkae")]
    return [*cache, ok(action), *draw(line([*DATA[action], UNKNOWN]))]


COMMANDS = {"train": train_lines(), "compare": line(COMPARE, fixed=2), "data": data_lines(), "eval": line(EVAL)}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "bc"
    assert main(["train", "bc", "--task", TASK, *TINY_RUN, "--run-dir", str(run_dir), "hidden=[16]"]) == 0
    return run_dir


@pytest.fixture
def files(tmp_path, monkeypatch) -> Path:
    """The files the command lines name, and stubs where each command's real work would start."""
    from offrl_zoo.bench import estimate, executors
    from offrl_zoo.data.generation import datasets
    from offrl_zoo.train import run, run_seeds

    def accept_run(request, task, resolved, device, run_dir, *args, **kwargs):
        raise Accepted(request=request, config=resolved.config, run_dir=run_dir)

    def accept(*args, **kwargs):
        raise Accepted()

    for module in (run, run_seeds):
        monkeypatch.setattr(module, "prepare_trainer", accept_run)
    for module, name in (
        (estimate, "estimate_sweep"),
        (executors, "run_local"),
        (executors, "run_ray"),
        (datasets, "generate"),
    ):
        monkeypatch.setattr(module, name, accept)
    monkeypatch.setenv("OFFRL_ZOO_CACHE", str(tmp_path / "cache"))  # `data --cache-dir` changes it: restored after
    (tmp_path / "good.yaml").write_text("top_fraction: 0.5\n")
    (tmp_path / "bad-yaml.yaml").write_text("top_fraction: [0.5\n")
    (tmp_path / "unknown-key.yaml").write_text("top_fractoin: 0.5\n")
    (tmp_path / "text.hdf5").write_text("observations,actions\n")
    _write_d4rl(tmp_path / "valid.hdf5")
    return tmp_path


def _write_d4rl(path: Path, n: int = 200) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as fh:
        fh["observations"] = rng.normal(size=(n, 11)).astype(np.float32)  # Hopper-v5's widths
        fh["actions"] = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        fh["rewards"] = rng.normal(size=n).astype(np.float32)
        fh["terminals"] = np.zeros(n, bool)
        fh["timeouts"] = (np.arange(n) % 100 == 99).astype(bool)


def _argv(command: str, parts: list[Part], files: Path, run_dir: Path, example: Path) -> list[str]:
    where = {"{files}": str(files), "{run}": str(run_dir), "{ex}": str(example)}
    tokens = [command] + [t for p in parts for t in p.tokens]
    tokens += {"train": ["--out", "{ex}/out"], "compare": ["--out", "{ex}/store"]}.get(command, [])
    for key, value in where.items():
        tokens = [t.replace(key, value) for t in tokens]
    return tokens


@settings(max_examples=450, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["train", *COMMANDS]).flatmap(lambda c: st.tuples(st.just(c), COMMANDS[c])))
def test_any_command_line_is_refused_in_one_line_or_carried_out(files, tiny_run, capsys, case):
    command, parts = case
    TRIED["command lines"] += 1
    broken = [p for p in parts if p.broken]
    TRIED["with a broken token"] += bool(broken)
    argv = _argv(command, parts, files, tiny_run, files / f"example{TRIED['command lines']}")
    try:
        code = main(argv)
        seen: dict = {}
    except Accepted as accepted:
        code, seen = 0, accepted.seen
    finally:
        torch.set_num_threads(1)
    out, err = capsys.readouterr()
    if broken:
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("offrl-zoo: error: "), (argv, err)
        names = [n.replace("{files}", str(files)) for p in broken for n in p.names]
        assert any(n in lines[0] for n in names), (argv, names, err)
        return
    assert code == 0, (argv, err)
    if command == "eval":
        seen = {"protocol": json.loads(out)["protocol"]}
    for part in parts:
        assert part.check is None or not seen or part.check(seen), (argv, part.tokens, seen)


def teardown_module() -> None:  # shown with ``pytest -s``
    print(
        f"\nproperty test: {TRIED['command lines']} command lines, {TRIED['with a broken token']} with a broken token"
    )
