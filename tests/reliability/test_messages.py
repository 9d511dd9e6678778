"""The CLI's error boundary: every expected failure is one line on stderr with a hint and exit code 2;
Ctrl-C names what it stopped; only a bug shows a traceback, followed by one line asking for a report."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from _cli import TASK, TINY_RUN, refusal, run_main

from offrl_zoo import io as offrl_io
from offrl_zoo import registry
from offrl_zoo.io import load_torch
from offrl_zoo.train import run as train_run
from offrl_zoo.train import run_dir as run_dir_files
from offrl_zoo.train.trainer import Trainer

BC = ["train", "bc", "--task", TASK, *TINY_RUN]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    from offrl_zoo.cli import main

    run_dir = tmp_path_factory.mktemp("runs") / "bc"
    assert main([*BC, "--run-dir", str(run_dir), "hidden=[16]"]) == 0
    return run_dir


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    real_mkstemp, written = tempfile.mkstemp, []

    def full_after_first_checkpoint(suffix=None, prefix=None, dir=None, text=False):  # noqa: A002 - tempfile's names
        if prefix == ".checkpoint.pt." and written:
            name = Path(dir) / f"{prefix}full{suffix}"
            name.touch()
            return os.open("/dev/full", os.O_WRONLY), str(name)  # every write: ENOSPC
        if prefix == ".checkpoint.pt.":
            written.append(prefix)
        return real_mkstemp(suffix, prefix, dir, text)

    monkeypatch.setattr(offrl_io.tempfile, "mkstemp", full_after_first_checkpoint)
    code, _, err = run_main([*BC, "--run-dir", str(tmp_path / "r"), "hidden=[16]"], capsys)
    refusal(code, err, "checkpoint.pt: No space left on device; the previous version is intact")
    assert load_torch(tmp_path / "r" / "checkpoint.pt")["next_step"] == 5  # the first one, whole
    assert not list((tmp_path / "r").glob(".*.tmp"))


def test_a_read_only_output_folder_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o500)
    if os.access(out, os.W_OK):  # root ignores permissions: refuse the writes as the kernel would
        real_mkdir = os.mkdir

        def refused(path, *args, **kwargs):
            if Path(path).is_relative_to(out) and Path(path).parent.is_dir():  # else ENOENT, as the kernel
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", refused)
    code, _, err = run_main([*BC, "--out", str(out)], capsys)
    line = refusal(code, err, f"cannot create {out / 'bc'}: Permission denied")
    assert "hint: free some disk space or give a writable --out" in line
    out.chmod(0o700)


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda good: good[: len(good) // 2], "damaged or not a checkpoint"),
        (lambda good: good[:-1], "damaged or not a checkpoint"),
        (lambda good: os.urandom(len(good)), "damaged or not a checkpoint"),  # not "unsafe"
        (lambda good: good[:3000] + bytes(100) + good[3100:], "damaged: its part"),
        (lambda good: b"", "damaged or not a checkpoint"),
    ],
    ids=["truncated", "last byte cut", "garbage", "zeroed bytes", "empty"],
)
def test_a_damaged_checkpoint_is_one_line_naming_it_and_never_called_unsafe(
    finished_run, tmp_path, capsys, damage, says
):
    run_dir = tmp_path / "r"
    shutil.copytree(finished_run, run_dir)
    path = run_dir / "checkpoint.pt"
    path.write_bytes(damage(path.read_bytes()))
    for argv in (["eval", str(run_dir)], [*BC, "--run-dir", str(run_dir), "hidden=[16]"]):
        (run_dir / "done").unlink(missing_ok=True)  # the second: a resume reads it too
        line = refusal(*run_main(argv, capsys)[::2], f"{path}: {says}")
        assert "unsafe" not in line and "run code" not in line


@pytest.mark.parametrize(
    "args, named",
    [
        (["--device", "tpu"], "argument --device: 'tpu': expected cpu, cuda or cuda:N"),
        (["--device", "cuda:x"], "argument --device: 'cuda:x'"),
        (["--steps", "99999999999999999999"], "--steps: 99999999999999999999: expected a positive integer of at most"),
        (["--seeds", "100000"], "--seeds: 100000: expected a positive integer of at most 10,000 seeds"),
        (["--eval-episodes", "1000000"], "at most 100,000 episodes"),
        (["--threads", "0"], "--threads: 0: expected a positive integer"),
        (["--seed", "4294967295", "--seeds", "2"], "the last seed, 4294967296, is not below 2**32"),
        (["--vectorize-seeds", "--run-dir", "x"], "--run-dir names one run"),
        (["lr=1e300"], "lr=1e+300: a learning rate must be finite and at most 1"),
        (["lr=inf"], "lr=inf: a learning rate must be finite and at most 1"),
        (["lr=nan"], "lr=nan: a learning rate"),
        (["lr=2"], "lr=2.0: a learning rate must be finite and at most 1"),
        (["hidden=[64,"], "command-line override 'hidden=[64,': not a valid value"),
        (["hidden={"], "command-line override 'hidden={'"),
        (["=5"], "command-line override '=5': expected key=value"),
        (["steps=99999999999999999999"], "steps=99999999999999999999: expected at most 10^9"),
        (["batch_size=10000000000"], "batch_size=10000000000: expected at most 10^9"),
        (["hidden=[100000]"], "hidden[0]=100000: expected a layer width from 1 to 16384"),
        (["hidden=[16,0]"], "hidden[1]=0: expected a layer width"),
        (["return_range_scale=1e39"], "return_range_scale=1e+39: expected a finite number within float32's range"),
        (["lr=${oc.env:NO_SUCH_VARIABLE_HERE}"], "bc config for"),
        (["--bogus"], "train: unrecognized arguments: --bogus"),
    ],
)
def test_absurd_or_malformed_requests_are_one_line_naming_the_limit(tmp_path, capsys, args, named):
    code, _, err = run_main([*BC, "--out", str(tmp_path / "out"), *args], capsys)
    refusal(code, err, named)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, named",
    [
        (["compare", "bc", "--suite", "toy", "--budget", "99999999999999999999"], "--budget: '99999999999999999999'"),
        (["compare", "bc", "--suite", "toy", "--device", "tpu"], "--device: 'tpu'"),
        (["compare", "bc", "--suite", "toy", "--jobs", "5000"], "--jobs: 5000: expected a positive integer"),
        (["data", "make", "hopper-medium-v2", "--size", "0"], "data make: argument --size: 0"),
        (["eval", "no-such-run", "--device", "tpu"], "eval: argument --device"),
        ([], "the following arguments are required: COMMAND"),
        (["trian"], "argument COMMAND: invalid choice: 'trian'"),
    ],
)
def test_other_commands_refuse_in_one_line(tmp_path, capsys, argv, named):
    line = refusal(*run_main([*argv, "--out", str(tmp_path / "out")] if argv else [], capsys)[::2], named)
    assert "(hint: see `offrl-zoo" in line


def test_a_refused_dataset_leaves_no_run_folder(tmp_path, capsys):
    data = tmp_path / "not-hdf5.hdf5"
    data.write_text("x")
    out = tmp_path / "out"
    code, _, err = run_main(
        ["train", "bc", "--dataset", str(data), "--env", "Hopper-v5", "--out", str(out), "--steps", "5"], capsys
    )
    refusal(code, err, f"{data}: not a readable HDF5 file")
    assert not out.exists()


def test_a_refused_run_in_a_sweep_keeps_its_failed_marker(tmp_path, capsys):
    """A sweep's run directory holds the training log: the refusal stays visible to the sweep's report."""
    data = tmp_path / "not-hdf5.hdf5"
    data.write_text("x")
    run_dir = tmp_path / "store" / "runs" / "bc" / "x" / "seed0"
    run_dir.mkdir(parents=True)
    (run_dir / run_dir_files.TRAIN_LOG).write_text("")
    code, _, err = run_main(
        ["train", "bc", "--dataset", str(data), "--env", "Hopper-v5", "--run-dir", str(run_dir), "--steps", "5"],
        capsys,
    )
    refusal(code, err, "not a readable HDF5 file")
    assert {p.name for p in run_dir.iterdir()} == {run_dir_files.TRAIN_LOG, run_dir_files.FAILED, run_dir_files.LOCK}


def test_ctrl_c_names_the_run_and_whether_it_had_started(finished_run, tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_run, "load_dataset", interrupt)  # while loading the data: nothing started
    out = tmp_path / "out"
    code, _, err = run_main([*BC, "--out", str(out)], capsys)
    run_dir = out / "bc" / TASK / "seed0"
    assert code == 130 and err.splitlines() == [
        f"offrl-zoo: interrupted: {run_dir} had not started and nothing was kept; re-run the same command to start it"
    ]
    assert not out.exists()
    monkeypatch.undo()
    monkeypatch.setattr(train_run.Trainer, "run", interrupt)  # while training: resumable
    resumed = tmp_path / "resumed"
    shutil.copytree(finished_run, resumed)
    (resumed / "done").unlink()
    code, _, err = run_main([*BC, "--run-dir", str(resumed), "hidden=[16]"], capsys)
    assert code == 130 and err.splitlines()[2:] == [
        f"offrl-zoo: interrupted: {resumed} stopped; re-run the same command to resume it from its last checkpoint"
    ]  # after the two lines saying what the run trains on and where it lands


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped Ctrl-C, as meant
def test_ctrl_c_dropped_on_its_way_still_stops_the_run(tmp_path, capsys, monkeypatch):
    """Python drops an exception raised in a ``__del__``: a Ctrl-C landing there is remembered and stops
    the run at its next step instead of letting it train to the end."""

    class CtrlCWhenCollected:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)

    steps: list[int] = []
    after_step = Trainer.after_step

    def step_and_collect(self, run, step, metrics):
        steps.append(step)
        if step == 7:  # after the checkpoint at step 5
            CtrlCWhenCollected()  # collected at once: its KeyboardInterrupt is printed and dropped by Python
        return after_step(self, run, step, metrics)

    monkeypatch.setattr(Trainer, "after_step", step_and_collect)
    run_dir = tmp_path / "r"
    code, _, err = run_main([*BC, "--run-dir", str(run_dir)], capsys)
    assert code == 130, err
    assert err.splitlines()[-1] == (
        f"offrl-zoo: interrupted: {run_dir} stopped; re-run the same command to resume it from its last checkpoint"
    )
    assert steps == list(range(8)) and not (run_dir / "done").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after the command


def test_train_says_what_it_trains_on_and_that_it_resumes(finished_run, tmp_path, capsys):
    resumed = tmp_path / "resumed"
    shutil.copytree(finished_run, resumed)
    (resumed / "done").unlink()
    code, out, err = run_main([*BC, "--run-dir", str(resumed), "hidden=[16]"], capsys)
    sha = json.loads((resumed / "provenance.json").read_text())["dataset"]["sha256"]
    assert code == 0, err
    assert err.splitlines()[:3] == [
        f"bc on {TASK}, seed 0 -> {resumed}",
        f"  data: toy 25_gaussian/near: 10,000 transitions (next_observations rule), 10,000 episodes, sha256 {sha[:8]}",
        f"  resuming from {resumed / 'checkpoint.pt'}: the end of training (10 of 10 steps done)",
    ]
    assert out.startswith(f"{resumed}: return")


def test_ctrl_c_before_the_run_is_known_names_what_was_asked(tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_run.RunRequest, "resolve_task", interrupt)
    code, _, err = run_main([*BC, "--out", str(tmp_path / "out")], capsys)
    assert code == 130 and err.splitlines() == [
        f"offrl-zoo: interrupted: bc on {TASK} had not started and nothing was kept; "
        "re-run the same command to start it"
    ]


def test_ctrl_c_in_a_sweep_names_the_store(tmp_path, capsys, monkeypatch):
    from offrl_zoo.bench import executors, report

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(executors, "run_local", interrupt)
    store = tmp_path / "store"
    code, _, err = run_main(
        ["compare", "bc", "--tasks", TASK, "--seeds", "1", "--no-estimate", "--out", str(store)], capsys
    )
    assert code == 130 and err.splitlines() == [
        f"offrl-zoo: interrupted: the sweep in {store} stopped; its finished runs are kept: re-run the same "
        "command to resume the others"
    ]
    monkeypatch.setattr(report, "build_report", interrupt)
    (store / "runs").mkdir(exist_ok=True)
    code, _, err = run_main(["report", str(store)], capsys)
    assert code == 130 and err.splitlines() == [
        f"offrl-zoo: interrupted: the report in {store / 'report'} was not finished; `offrl-zoo report {store}` "
        "rebuilds it"
    ]


def _plugin(root: Path, package: str, entry_points: dict[str, str]) -> None:
    """An installed-looking distribution (a dist-info folder on sys.path) with these algorithm entry points."""
    info = root / f"{package.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{lines}")


def test_a_broken_plugin_does_not_hide_the_others_and_a_shadowing_one_is_named_once(tmp_path, capsys, monkeypatch):
    _plugin(tmp_path, "broken-plugin", {"broken": "offrl_zoo_no_such_module:Algo"})
    _plugin(tmp_path, "shadow-plugin", {"iql": "offrl_zoo_example_plugin:MLBC"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_warned", set())
    code, out, err = run_main(["list"], capsys)
    assert code == 0
    listed = {line.split()[0]: line for line in out.splitlines()}
    assert set(registry.builtins()) | {"broken", "mlbc"} <= set(listed)
    assert "unavailable: offrl_zoo_no_such_module:Algo (algorithm 'broken' of broken-plugin)" in listed["broken"]
    assert err.splitlines() == [
        "offrl-zoo: warning: plugin package 'shadow-plugin' registers an algorithm named 'iql' "
        "(offrl_zoo_example_plugin:MLBC), which is a built-in name: offrl-zoo uses its built-in 'iql'; "
        "rename the plugin's entry point to use it"
    ]
    assert registry.get("iql").__module__ == "offrl_zoo.algorithms.iql.iql"
    code, _, err = run_main(["train", "broken", "--task", TASK], capsys)
    line = refusal(code, err, "algorithm 'broken' of broken-plugin): cannot be loaded (ModuleNotFoundError")
    assert "hint: fix or uninstall the plugin package" in line


def test_a_bug_shows_its_traceback_and_one_line_asking_for_a_report(capsys, monkeypatch):
    def bug() -> dict:
        return {}["missing"]

    monkeypatch.setattr(registry, "available", bug)
    code, _, err = run_main(["list", "presets"], capsys)
    lines = err.strip().splitlines()
    assert code == 1 and lines[0] == "Traceback (most recent call last):" and "KeyError: 'missing'" in err
    assert lines[-1] == (
        "offrl-zoo 0.1.0: unexpected error, a bug in offrl-zoo or a plugin: please report it with the traceback "
        "above and the command: offrl-zoo list presets"
    )
