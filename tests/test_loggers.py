"""--logger tensorboard|wandb|csv: what reaches TensorBoard, W&B and CSV files, read back with their own
readers; a killed and resumed run sends no step twice; a missing package names its extra."""

from __future__ import annotations

import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from offrl_zoo import registry
from offrl_zoo.bench.executors import TrainSettings, run_local, train_command
from offrl_zoo.bench.sweep import RunSpec
from offrl_zoo.cli import main
from offrl_zoo.cli.main import build_parser
from offrl_zoo.config import ConfigError
from offrl_zoo.train.loggers import RunLoggers, logger_kinds

TASK = "toy-25_gaussian-far"
RUN = "iql/toy-25_gaussian-far/seed0"
TINY = ["--task", TASK, "--steps", "200", "--log-every", "25", "--eval-every", "50", "--checkpoint-every", "100"]
TINY += ["--eval-episodes", "100", "--no-progress", "hidden=[32,32]"]
EVAL_KEYS = ("return_mean", "return_std", "score_mean", "score_std")


def train(out: Path, *loggers: str, algorithm: str = "iql", extra: tuple[str, ...] = ()) -> int:
    return main(["train", algorithm, *TINY, "--out", str(out), *extra, *[a for k in loggers for a in ("--logger", k)]])


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def measurements(line: dict) -> dict[str, float]:
    return {k: v for k, v in line.items() if k not in ("stage", "step", "global_step")}


def events(run_dir: Path) -> EventAccumulator:
    # purge_orphaned_data=False: TensorBoard would otherwise hide a step written twice, which we must see
    acc = EventAccumulator(str(run_dir / "tensorboard"), purge_orphaned_data=False)
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> Path:
    """One tiny IQL run with the TensorBoard and CSV loggers."""
    out = tmp_path_factory.mktemp("logged")
    assert train(out, "tensorboard", "csv") == 0
    return out / RUN


def test_tensorboard_holds_every_metrics_line_evaluation_and_the_cost(logged_run):
    acc = events(logged_run)
    lines = jsonl(logged_run / "metrics.jsonl")
    assert [m["global_step"] for m in lines] == list(range(25, 201, 25))
    for key in measurements(lines[0]):
        got = [(e.step, e.value) for e in acc.Scalars(f"train/train/{key}")]
        assert got == [(m["global_step"], pytest.approx(m[key], rel=1e-6)) for m in lines], key
    evals = jsonl(logged_run / "eval.jsonl")
    assert [e["step"] for e in evals] == [50, 100, 150, 200]
    for key in EVAL_KEYS:
        assert [(e.step, e.value) for e in acc.Scalars(f"eval/{key}")] == [
            (e["step"], pytest.approx(e[key], rel=1e-6)) for e in evals
        ]
    modes = [e.value for e in acc.Scalars("eval/samples/modes_hit")]
    assert modes == [e["samples"]["modes_hit"] for e in evals]
    done = json.loads((logged_run / "done").read_text())
    assert [(e.step, e.value) for e in acc.Scalars("cost/updates_per_s")] == [
        (200, pytest.approx(done["cost"]["updates_per_s"]))
    ]
    texts = acc.Tags()["tensors"]
    assert {"run/config/text_summary", "run/provenance/text_summary", "eval/protocol/text_summary"} <= set(texts)
    config = acc.Tensors("run/config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "algorithm: iql" in config and "hidden:" in config


def test_csv_logger_writes_a_file_per_scalar(logged_run):
    lines = jsonl(logged_run / "metrics.jsonl")
    with open(logged_run / "csv/scalars/train/train/critic_loss.csv") as fh:
        rows = [(int(step), float(value)) for step, value in csv.reader(fh)]
    assert rows == [(m["global_step"], pytest.approx(m["critic_loss"])) for m in lines]
    assert (logged_run / "csv/scalars/eval/score_mean.csv").read_text().count("\n") == 4
    assert "algorithm: iql" in (logged_run / "csv/texts/run/config0.txt").read_text()


def wandb_records(run_dir: Path, timeout: float = 60.0) -> list:
    """The records of the run's offline ``.wandb`` file, once complete (its last record is the run's exit).

    ``finish()`` returns before wandb's service closes the file, and the service buffers a whole 32 KiB block
    before writing it: read at once under load, the file can hold its header alone (a CI failure)."""
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        records = _wandb_log(path.read_bytes())
        if records and records[-1].WhichOneof("record_type") == "exit" or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _wandb_log(data: bytes) -> list:
    """wandb's LevelDB-style log of its protobuf records, parsed (a partly written file gives its full records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    pos, block, parts, records = 7, 32768, [], []  # 7: the file's ":W&B" header
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a record header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # a record still being written
            break
        parts.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last part of one
            records.append(pb.Record.FromString(b"".join(parts)))
            parts = []
    return records


def key(item) -> str:
    return item.key or "/".join(item.nested_key)  # wandb stores a key holding "/" as its parts


def test_wandb_runs_offline_without_an_api_key_and_records_the_run(tmp_path, monkeypatch, capsys):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert train(tmp_path, "wandb", extra=("--logger-group", "sweep-a")) == 0
    run_dir = tmp_path / RUN
    (offline,) = run_dir.glob("wandb/offline-run-*")
    err = capsys.readouterr().err
    assert f"wandb: offline mode (no API key); sync later with: wandb sync {offline}\n" in err
    records = wandb_records(run_dir)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.display_name, run.project, run.run_group) == (RUN, "offrl-zoo", "sweep-a")
    assert run.run_id == json.loads((run_dir / "loggers.json").read_text())["wandb_id"]
    config = {key(i): json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update}
    assert config["config"]["request"]["algorithm"] == "iql" and "dataset" in config["provenance"]
    rows = [{key(i): json.loads(i.value_json) for i in r.history.item} for r in records if r.HasField("history")]
    train_rows = [r for r in rows if "train/train/critic_loss" in r]
    lines = jsonl(run_dir / "metrics.jsonl")
    assert [(r["train/train/step"], r["train/train/critic_loss"]) for r in train_rows] == [
        (m["global_step"], pytest.approx(m["critic_loss"])) for m in lines
    ]
    evals = [(r["eval/step"], r["eval/score_mean"]) for r in rows if "eval/score_mean" in r]
    assert evals == [(e["step"], pytest.approx(e["score_mean"])) for e in jsonl(run_dir / "eval.jsonl")]
    assert any("cost/updates_per_s" in r for r in rows)


def test_a_killed_and_resumed_run_sends_each_step_once(tmp_path, monkeypatch):
    """Killed at update 180: the lines of steps 125..175 and the evaluation at 150 were written after the
    step-100 checkpoint; the resumed run cuts them and writes them again. Each logger holds each once."""
    cls = registry.get("iql")
    original, calls = cls.update, {"n": 0}

    def crashing_update(self, batch, step):
        calls["n"] += 1
        if calls["n"] == 180:
            raise KeyboardInterrupt
        return original(self, batch, step)

    with monkeypatch.context() as patch:
        patch.setattr(cls, "update", crashing_update)
        assert train(tmp_path, "tensorboard") == 130  # interrupted
    run_dir = tmp_path / RUN
    assert [m["step"] for m in jsonl(run_dir / "metrics.jsonl")] == [25, 50, 75, 100, 125, 150, 175]
    assert [e.step for e in events(run_dir).Scalars("train/train/critic_loss")] == [25, 50, 75, 100]
    assert train(tmp_path, "tensorboard", "csv") == 0  # csv, new to the run, is sent its whole history
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one per process
    acc = events(run_dir)
    for tag in acc.Tags()["scalars"]:
        steps = [e.step for e in acc.Scalars(tag)]
        assert steps == sorted(set(steps)), tag
    assert [e.step for e in acc.Scalars("train/train/critic_loss")] == list(range(25, 201, 25))
    assert [e.step for e in acc.Scalars("eval/score_mean")] == [50, 100, 150, 200]
    assert [e.step for e in acc.Tensors("run/config/text_summary")] == [0]
    rows = (run_dir / "csv/scalars/train/train/critic_loss.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in rows] == list(range(25, 201, 25))


def test_a_sigkilled_and_resumed_run_sends_each_step_once(tmp_path):
    """A real kill: SIGKILL once the lines of steps 125 and 150 are written after the step-100 checkpoint."""
    argv = [sys.executable, "-m", "offrl_zoo.cli", "train", "iql", *TINY, "--out", str(tmp_path)]
    argv = [*argv, "--steps", "600", "--logger", "tensorboard"]  # the last --steps wins
    env = dict(os.environ, OMP_NUM_THREADS="1")
    metrics = tmp_path / RUN / "metrics.jsonl"
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        if metrics.is_file() and metrics.read_text().count("\n") >= 6:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / RUN / "done").exists(), "the run finished before the kill"
    assert subprocess.run(argv, env=env, capture_output=True, timeout=120).returncode == 0
    acc = events(tmp_path / RUN)
    assert [e.step for e in acc.Scalars("train/train/critic_loss")] == list(range(25, 601, 25))
    assert [e.step for e in acc.Scalars("eval/score_mean")] == list(range(50, 601, 50))


def test_lines_a_kill_kept_from_the_loggers_after_a_checkpoint_are_sent_on_resume(tmp_path, monkeypatch):
    """Killed right after the step-100 checkpoint, before its lines were sent: the resumed run sends them."""
    forward = RunLoggers.forward

    def dying_forward(self, covered):
        if covered["metrics"] > 0:  # the first checkpoint's lines
            raise KeyboardInterrupt
        forward(self, covered)

    with monkeypatch.context() as patch:
        patch.setattr(RunLoggers, "forward", dying_forward)
        assert train(tmp_path, "tensorboard") == 130
    run_dir = tmp_path / RUN
    assert "train/train/critic_loss" not in events(run_dir).Tags()["scalars"]
    assert train(tmp_path, "tensorboard") == 0
    acc = events(run_dir)
    assert [e.step for e in acc.Scalars("train/train/critic_loss")] == list(range(25, 201, 25))
    assert [e.step for e in acc.Scalars("eval/score_mean")] == [50, 100, 150, 200]


def test_vectorized_seeds_log_each_seed_as_its_own_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert train(tmp_path, "tensorboard", "wandb", extra=("--seeds", "2", "--vectorize-seeds")) == 0
    for seed in (0, 1):
        run_dir = tmp_path / f"iql/{TASK}/seed{seed}"
        lines = jsonl(run_dir / "metrics.jsonl")
        got = [(e.step, e.value) for e in events(run_dir).Scalars("train/train/critic_loss")]
        assert got == [(m["global_step"], pytest.approx(m["critic_loss"], rel=1e-6)) for m in lines]
        records = wandb_records(run_dir)  # one W&B run per seed, both open in one process
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert run.display_name == f"iql/{TASK}/seed{seed}"
        rows = [{key(i): json.loads(i.value_json) for i in r.history.item} for r in records if r.HasField("history")]
        assert [r["train/train/critic_loss"] for r in rows if "train/train/critic_loss" in r] == [
            pytest.approx(m["critic_loss"]) for m in lines
        ]


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize("kind", ["tensorboard", "wandb"])
def test_a_missing_package_names_its_extra_before_anything_starts(tmp_path, monkeypatch, capsys, kind, command):
    monkeypatch.setitem(sys.modules, kind, None)  # `import kind` raises ImportError
    argv = [command, "iql", "--out", str(tmp_path / "out"), "--logger", "csv", "--logger", kind]
    argv += ["--task", TASK] if command == "train" else ["--tasks", TASK, "--yes"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--logger {kind} needs the {kind} package: pip install 'offrl-zoo[{kind}]'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_logger_none_alone_means_none():
    assert logger_kinds(None) == logger_kinds(["none"]) == ()
    assert logger_kinds(["wandb", "tensorboard", "wandb"]) == ("wandb", "tensorboard")
    with pytest.raises(ConfigError, match="--logger none cannot be combined"):
        logger_kinds(["none", "csv"])


def test_compare_passes_the_loggers_and_the_sweep_group_to_each_run(tmp_path):
    store = tmp_path / "toy-quick"
    spec = RunSpec("iql", TASK, 0, None, 1000)
    cmd = train_command((spec,), store, TrainSettings(loggers=("tensorboard", "wandb")))
    args = build_parser().parse_args(cmd[3:])  # after `python -m offrl_zoo.cli`
    assert (args.logger, args.logger_group) == (["tensorboard", "wandb"], "toy-quick")
    plain = build_parser().parse_args(train_command((spec,), store, TrainSettings())[3:])
    assert (plain.logger, plain.logger_group) == (None, None)


def test_a_sweep_run_logs_under_its_run_directory_in_the_sweeps_wandb_group(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # the training process inherits it
    store = tmp_path / "toy-tiny"
    spec = RunSpec("iql", TASK, 0, steps=100, overrides=("hidden=[32,32]",))
    settings = TrainSettings(eval_every=50, eval_episodes=100, loggers=("tensorboard", "wandb"))
    assert run_local([spec], store, settings, jobs=1, log=lambda m: None) == {spec: "done"}
    run_dir = spec.run_dir(store)  # STORE/runs/iql/TASK/seed0: `tensorboard --logdir STORE/runs` names it so
    assert [e.step for e in events(run_dir).Scalars("eval/score_mean")] == [50, 100]
    (run,) = [r.run for r in wandb_records(run_dir) if r.WhichOneof("record_type") == "run"]
    assert (run.display_name, run.run_group) == (RUN, "toy-tiny")


def test_an_evaluation_of_a_later_stage_is_plotted_at_its_global_step(tmp_path):
    """Evaluation lines name their stage's own step; the loggers get the run's global step."""
    from torchrl.record.loggers import CSVLogger

    lines = [{"stage": "pretrain", "step": 10, "global_step": 10, "loss": 1.0}]
    lines += [{"stage": "train", "step": 5, "global_step": 25, "loss": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "eval.jsonl").write_text(json.dumps({"stage": "train", "step": 5, "return_mean": 3.0}) + "\n")
    for name in ("config.yaml", "provenance.json"):
        (tmp_path / name).write_text("{}")
    loggers = RunLoggers(tmp_path, {"csv": CSVLogger("csv", str(tmp_path))}, {"pretrain": 0, "train": 20}, 25, {})
    loggers.start(None)
    assert not (tmp_path / "csv/scalars/train").exists()  # nothing before a checkpoint covers it
    sizes = {log: (tmp_path / f"{log}.jsonl").stat().st_size for log in ("metrics", "eval")}
    loggers.forward(sizes)
    loggers.forward(sizes)  # a second checkpoint covering nothing new sends nothing again
    read = (tmp_path / "csv/scalars/{}.csv").as_posix().format
    assert Path(read("train/pretrain/loss")).read_text() == "10,1.0\n"
    assert Path(read("train/train/loss")).read_text() == "25,0.5\n"
    assert Path(read("eval/return_mean")).read_text() == "25,3.0\n"
    assert json.loads((tmp_path / "loggers.json").read_text())["sent"] == {"csv": sizes}
