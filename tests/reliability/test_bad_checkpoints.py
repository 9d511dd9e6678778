"""Damaged checkpoints: a real one cut, altered, padded or replaced at random is either refused in one line
naming the file (damaged, never "unsafe") or, where the damage missed what the file holds, loaded and
evaluated with exactly the weights it was saved with."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from _cli import TASK, TINY_RUN, refusal, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offrl_zoo.cli import main
from offrl_zoo.errors import CheckpointError, UnsafeFileError
from offrl_zoo.io import load_torch

TRIED = {"damaged checkpoints": 0, "loaded intact": 0}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, bytes, dict]:
    """A finished run, its checkpoint's bytes and what they hold."""
    run_dir = tmp_path_factory.mktemp("run") / "bc"
    assert main(["train", "bc", "--task", TASK, *TINY_RUN, "--run-dir", str(run_dir), "hidden=[16]"]) == 0
    path = run_dir / "checkpoint.pt"
    return run_dir, path.read_bytes(), load_torch(path)


@st.composite
def damage(draw, size: int) -> list[tuple]:
    """1-3 edits of a file of ``size`` bytes (positions drawn as fractions, so they fit any length)."""
    where = st.floats(0, 1)
    edit = st.one_of(
        st.tuples(st.just("flip"), where, st.integers(1, 255)),
        st.tuples(st.just("zero"), where, st.integers(1, 64)),
        st.tuples(st.just("cut"), where),
        st.tuples(st.just("insert"), where, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), where, st.integers(1, 64)),
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("replace"), st.binary(max_size=256)),
    )
    return draw(st.lists(edit, min_size=1, max_size=3))


def apply(data: bytes, edits: list[tuple]) -> bytes:
    out = bytearray(data)
    for kind, *args in edits:
        at = int(args[0] * len(out)) if kind not in ("append", "replace") else 0
        if kind == "flip" and out:
            out[min(at, len(out) - 1)] ^= args[1]
        elif kind == "zero":
            out[at : at + args[1]] = bytes(len(out[at : at + args[1]]))
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = args[1]
        elif kind == "delete":
            del out[at : at + args[1]]
        elif kind == "append":
            out += args[0]
        elif kind == "replace":
            out = bytearray(args[0])
    return bytes(out)


def same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(damage(1))
def test_any_damage_is_refused_in_one_line_or_loads_the_very_weights(saved, capsys, edits):
    run_dir, good, state = saved
    path = run_dir / "checkpoint.pt"
    TRIED["damaged checkpoints"] += 1
    path.write_bytes(apply(good, edits))
    code, out, err = run_main(["eval", str(run_dir), "--episodes", "1"], capsys)
    if code != 0:
        line = refusal(code, err, f"{path}: damaged", f"{path}: not a file of torch.save")
        assert "unsafe" not in line and "run code" not in line
        return
    TRIED["loaded intact"] += 1
    assert json.loads(out)["protocol"]["episodes"] == 1
    assert same(load_torch(path), state), edits


def test_garbage_is_damaged_and_a_pickle_payload_is_unsafe(saved, tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: damaged or not a checkpoint"):
        load_torch(path)
    torch.save({"weights": torch.zeros(2), "code": shutil.rmtree}, path)  # an intact file holding a function
    with pytest.raises(UnsafeFileError, match=r"checkpoint\.pt: refused: .* could run code .*GLOBAL shutil\.rmtree"):
        load_torch(path)


def teardown_module() -> None:  # shown with ``pytest -s``
    print(f"\nproperty test: {TRIED['damaged checkpoints']} damaged checkpoints, {TRIED['loaded intact']} intact")
