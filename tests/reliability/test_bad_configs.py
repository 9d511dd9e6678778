"""Bad configs and commands: a clear one-line error (with a suggestion where one exists) before any work;
random key=value overrides are each refused in one line or land in the config as given."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest
import yaml
from _cli import TASK, refusal, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from offrl_zoo import registry
from offrl_zoo.algorithm import FLOAT32_MAX, MAX_COUNT, MAX_LR, MAX_WIDTH
from offrl_zoo.cli import main

TRIED = {"override sets": 0, "with a bad item": 0}
TRAIN_CASES = {
    "unknown key": (["expectille=0.8"], r"unknown key 'expectille'\. Did you mean 'expectile'\?"),
    "wrong type": (["actor_lr=fast"], r"bad value for 'actor_lr': Value 'fast' of type 'str' could not be converted"),
    "wrong element type": (["hidden=[256,wide]"], r"bad value for 'hidden\[1\]'"),
    "negative learning rate": (["actor_lr=-3e-4"], r"actor_lr=-0\.0003: expected a positive number"),
    "expectile outside (0, 1)": (["expectile=1.2"], r"expectile=1\.2: expected a value in the open interval \(0, 1\)"),
    "discount outside (0, 1)": (["discount=0"], r"discount=0\.0: expected a value in the open interval"),
    "batch larger than the dataset": (
        ["batch_size=20000"],
        r"batch_size=20000 is larger than the dataset of toy-25_gaussian-near \(10000",
    ),
    "not key=value": (["expectile"], r"unrecognized arguments: expectile"),
}


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", list(TRAIN_CASES))
def test_bad_config_values_are_refused_before_training(tmp_path, capsys, name):
    overrides, message = TRAIN_CASES[name]
    code, err = run_cli(["train", "iql", "--task", TASK, "--steps", "5", "--out", str(tmp_path), *overrides], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert not list(tmp_path.rglob("config.yaml")) and not list(tmp_path.rglob("checkpoint.pt"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "iqll", "--task", TASK], r"unknown algorithm 'iqll'\. Did you mean 'iql'"),
        (
            ["train", "iql", "--task", "hopper-medum-v2"],
            r"unknown task 'hopper-medum-v2'\. Did you mean 'hopper-medium",
        ),
        (["compare", "iql", "--suite", "gym-medum"], r"unknown suite 'gym-medum'\. Did you mean 'gym-medium'"),
        (["train", "iql", "--task", TASK, "--steps", "0"], r"argument --steps: 0: expected a positive integer"),
        (["train", "iql", "--task", TASK, "--seed", "-1"], r"argument --seed: -1: expected a seed"),
        (["compare", "iql", "--suite", "toy", "--seeds", "0"], r"argument --seeds: 0: expected a positive integer"),
        (["compare", "iql", "--suite", "toy", "--seed", "-3"], r"argument --seed: -3: expected a seed"),
        (
            ["compare", "iql", "--suite", "toy", "--seed", str(2**32 - 1), "--seeds", "2"],
            r"--seed 4294967295 --seeds 2: the last seed, 4294967296, is not below 2\*\*32",
        ),
        (["compare", "iql", "--suite", "toy", "--budget", "fast"], r"--budget"),
        (["train", "iql", "--task", TASK, "--preset", "quik"], r"preset 'quik' unknown for iql"),
    ],
)
def test_unknown_names_and_bad_numbers(tmp_path, capsys, args, message):
    code, err = run_cli([*args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("checkpoint.pt"))


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "iql", "--suite", "toy", "--seed", str(2**32 - 1), "--seeds", "2"],
        ["train", "iql", "--task", TASK, "--seeds", "2", "--run-dir", "somewhere"],
        ["train", "iql", "--task", TASK, "--logger", "none", "--logger", "csv"],
    ],
)
def test_flag_errors_point_to_the_help_not_the_config(tmp_path, capsys, args):
    """A command line to fix gets the command's --help as its hint, not ``offrl-zoo config``."""
    code, err = run_cli([*args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and f"(hint: see `offrl-zoo {args[0]} --help`)" in err, err


def test_a_results_store_holding_another_experiment_is_refused(tmp_path, capsys):
    store = tmp_path / "store"
    base = ["compare", "bc", "--suite", "toy", "--seeds", "1", "--no-estimate", "--out", str(store)]
    from offrl_zoo.bench.sweep import plan, record_sweep

    record_sweep(store, plan(["bc"], "toy", None, 1, "50"))  # an existing store with a 50-step budget
    code, err = run_cli([*base, "--budget", "60"], capsys)
    assert code == 2 and "budget" in err and "use another --out" in err, err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("not results")
    code, err = run_cli([*base[:-1], str(foreign)], capsys)
    assert code == 2 and "not a results store" in err, err
    assert (foreign / "thesis.tex").read_text() == "not results" and len(list(foreign.iterdir())) == 1


def test_a_run_directory_holding_another_run_is_refused(tmp_path, capsys):
    args = ["train", "bc", "--task", TASK, "--steps", "5", "--run-dir", str(tmp_path / "r"), "hidden=[16]"]
    assert run_cli(args, capsys)[0] == 0
    (tmp_path / "r" / "done").unlink()
    code, err = run_cli([*args, "lr=0.5"], capsys)
    assert code == 2 and "already holds a different run (algorithm_config.lr: 0.0003 != 0.5;" in err, err


# -- property-based: random key=value overrides are refused in one line or land in the config as given -----

D4RL_TASK = "hopper-medium-v2"  # every algorithm has official settings for it
ALWAYS_VALID = ["batch_size=64", "steps=1000", "top_fraction=0.5", "holdout_fraction=0.1", "normalize_obs=true"]
ABSURD = ["inf", "-inf", "nan", ".inf", "1e300", "-1e300", "1e39", "99999999999999999999", "-5", "0"]
MALFORMED = ["[64,", "{", "'", "]]", "=", "*a", "%", "`", "!!python/object:os.system", "${oc.env:HOME}", "${nope}"]
BY_TYPE = {
    float: ["0.5", "3e-4", "0.99", "1", "2.5", "null", "fast"],
    bool: ["true", "false", "yes", "1", "maybe", "[true]"],
    int: ["1", "64", "1000000000", "1000000001", "2.5", "1e3", "[1]", "many"],
    str: ["raw", "5", "true", "other"],
    list: ["[16]", "[32,32]", "[]", "[0]", "[-1]", "[100000]", "[16,wide]", "16", "[1.5]"],
}


@st.composite
def override_sets(draw) -> tuple[str, list[str]]:
    """An algorithm and 1-4 key=value items: valid ones, unknown keys, wrong types, absurd numbers, bad YAML."""
    algorithm = draw(st.sampled_from(registry.builtins()))
    defaults = dataclasses.asdict(registry.get(algorithm).Config())
    items = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(sorted(defaults)))
        kind = draw(st.sampled_from(["valid", "typed", "absurd", "malformed", "unknown key"]))
        if kind == "valid":
            items.append(draw(st.sampled_from(ALWAYS_VALID)))
        elif kind == "unknown key":
            typo = key[:-1] if len(key) > 2 else key + "_"
            items.append(f"{draw(st.sampled_from([typo, 'foo', 'hidden.0', 'a b', '_']))}=1")
        else:
            like = float if defaults[key] is None else type(defaults[key])
            values = {"typed": BY_TYPE[like], "absurd": ABSURD, "malformed": MALFORMED}[kind]
            items.append(f"{key}={draw(st.sampled_from(values))}")
    return algorithm, items


def _printed(out: str) -> dict[str, tuple[Any, str]]:
    """key -> (value, origin) of `offrl-zoo config`'s lines."""
    lines = [line.rsplit(" # ", 1) for line in out.splitlines()[1:]]
    return {k: (v, origin) for line, origin in lines for k, v in yaml.safe_load("{" + line.strip() + "}").items()}


def _as_given(item: str, like: Any) -> Any:
    """What ``key=value`` sets, converted to the field's type as OmegaConf converts it."""
    raw = OmegaConf.to_container(OmegaConf.from_dotlist([item]))[item.partition("=")[0]]
    if isinstance(raw, list):
        return [int(x) for x in raw]
    return raw if raw is None or like is None else type(like)(raw)


def _within_limits(key: str, value: Any) -> bool:
    if isinstance(value, list):
        return all(1 <= v <= MAX_WIDTH for v in value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    if key == "lr" or key.endswith("_lr"):
        return math.isfinite(value) and value <= MAX_LR
    return math.isfinite(value) and abs(value) <= (FLOAT32_MAX if isinstance(value, float) else MAX_COUNT)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(override_sets())
def test_any_overrides_are_refused_in_one_line_or_land_as_given(capsys, case):
    algorithm, items = case
    TRIED["override sets"] += 1
    TRIED["with a bad item"] += any(item not in ALWAYS_VALID for item in items)
    code, out, err = run_main(["config", algorithm, "--task", D4RL_TASK, *items], capsys)
    if code != 0:
        bad = [i.partition("=")[0] or i for i in items if i not in ALWAYS_VALID]  # a key, or the item
        assert bad and any(key in refusal(code, err) for key in bad), (items, err)
        return
    printed = _printed(out)
    for key, item in {i.partition("=")[0]: i for i in items}.items():  # the last item of a key wins
        value, origin = printed[key]
        assert origin == "command line" and value == _as_given(item, value), (item, value, origin)
    assert all(_within_limits(k, v) for k, (v, _) in printed.items()), printed


def teardown_module() -> None:  # shown with ``pytest -s``
    print(f"\nproperty test: {TRIED['override sets']} override sets, {TRIED['with a bad item']} with a bad item")
