"""``--logger tensorboard|wandb|csv``: a copy of a run's metrics, evaluations, config and cost for TorchRL's
loggers, so that a long run can be watched in TensorBoard or Weights & Biases.

``metrics.jsonl`` and ``eval.jsonl`` stay the record: the loggers are sent their lines, and only once a
checkpoint covers them (``RunLoggers.forward``, called after each checkpoint). A resumed run cuts its logs
back to its checkpoint and writes the lines after it again; had those lines already been sent, TensorBoard
and W&B would hold their steps twice. ``loggers.json`` in the run directory records, per logger, up to which
byte of each log it has been sent, and the W&B run id (a resumed run goes on in the same W&B run). It is
written before the lines are sent, so a kill while sending can leave those lines out of a dashboard but
never sends them twice; a kill between a checkpoint and that record is caught up on resume. A logger added
when a run resumes is sent the run's history from its start.

Names: each line goes to ``train/<stage>/<metric>`` and each evaluation to ``eval/<metric>``, plotted against
the run's global step (steps summed over its stages); the cost of the run goes to ``cost/<figure>`` at its
last step. Files live in the run directory: ``tensorboard/``, ``wandb/``, ``csv/``.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from netrc import NetrcParseError, netrc
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from offrl_zoo.errors import FlagError
from offrl_zoo.io import write_json

if TYPE_CHECKING:
    from torchrl.record.loggers import Logger

    from offrl_zoo.train.trainer import Trainer

NEEDS_PACKAGE = ("tensorboard", "wandb")  # each installed by the extra of the same name
STATE = "loggers.json"
LOGS = ("metrics", "eval")  # the run's JSON-lines logs, as the checkpoint names their offsets
BOOKKEEPING = {"stage", "step", "global_step"}  # fields of a log line that are not measurements
WANDB_PROJECT = "offrl-zoo"


@dataclass(frozen=True)
class LoggerSettings:
    kinds: tuple[str, ...] = ()
    group: str | None = None  # W&B group; a compare sweep passes its store's name


def logger_kinds(values: Sequence[str] | None) -> tuple[str, ...]:
    """The loggers of repeated ``--logger`` values, each once; ``none`` alone means none."""
    values = list(values or [])
    if "none" in values and len(set(values)) > 1:
        raise FlagError(f"--logger none cannot be combined with --logger {' / '.join(sorted(set(values) - {'none'}))}")
    return tuple(dict.fromkeys(v for v in values if v != "none"))


def check_available(kinds: Sequence[str]) -> None:
    """Refuse, before any work, a logger whose package is not installed, naming the extra that brings it."""
    for kind in kinds:
        if kind not in NEEDS_PACKAGE:
            continue
        try:
            importlib.import_module(kind)
        except ImportError:
            err = FlagError(f"--logger {kind} needs the {kind} package: pip install 'offrl-zoo[{kind}]'")
            err.hint = f"or train without --logger {kind}"
            raise err from None


def open_run_loggers(trainer: Trainer, settings: LoggerSettings, name: str) -> RunLoggers | None:
    """The loggers of ``settings`` for ``trainer``'s run (None without any), named ``name``
    (``algorithm/task/seedN``). Call once the run's config.yaml and provenance.json are written."""
    if not settings.kinds:
        return None
    check_available(settings.kinds)
    run_dir = trainer.run_dir
    state = _read_state(run_dir)
    loggers = {kind: OPENERS[kind](run_dir, name, settings, state) for kind in settings.kinds}
    write_json(run_dir / STATE, state)  # a new W&B id is kept from the start
    offsets, total = {}, 0
    for stage in trainer.algo.stages():
        offsets[stage.name] = total
        total += trainer.planned_steps(stage)
    return RunLoggers(run_dir, loggers, offsets, total, state)


class RunLoggers:
    """Sends each logger the log lines that a checkpoint covers and it has not had yet."""

    def __init__(
        self, run_dir: Path, loggers: dict[str, Logger], offsets: dict[str, int], total: int, state: dict
    ) -> None:
        self.run_dir = run_dir
        self.loggers = loggers
        self.offsets = offsets  # stage name -> global step at which it starts
        self.total = total  # the run's last global step
        self.state = state  # loggers.json: {"sent": {kind: {log: byte offset}}, "wandb_id": ...}
        self.closed = False

    def start(self, checkpoint: dict | None) -> None:
        """At the start of training (``checkpoint``: the one resumed from, if any): the lines after it will be
        written again, so what was sent of them is forgotten; what it covers and was not sent goes now."""
        covered = {log: checkpoint[f"{log}_offset"] if checkpoint else 0 for log in LOGS}
        sent = self.state.setdefault("sent", {})
        for kind, offsets in sent.items():
            sent[kind] = {log: min(offsets[log], covered[log]) for log in LOGS}
        self.forward(covered)

    def forward(self, covered: dict[str, int]) -> None:
        """Send every logger the lines before byte ``covered[log]`` of each log that it has not had."""
        sent = self.state.setdefault("sent", {})
        before = {kind: sent.get(kind) for kind in self.loggers}
        sent.update({kind: dict(covered) for kind in self.loggers})
        write_json(self.run_dir / STATE, self.state)  # before sending: a kill leaves a gap, never a repeat
        for kind, logger in self.loggers.items():
            since = before[kind]
            if since is None:  # a logger new to this run: the run's record first, then its whole history
                self._send_record(kind, logger)
                since = {log: 0 for log in LOGS}
            for line in _lines(self.run_dir / "metrics.jsonl", since["metrics"], covered["metrics"]):
                self._send_metrics(logger, line)
            for line in _lines(self.run_dir / "eval.jsonl", since["eval"], covered["eval"]):
                self._send_eval(kind, logger, line)
            logger.flush()

    def finish(self, summary: dict) -> None:
        """After the ``done`` marker: the rest of the logs, the run's cost at its last step; then close."""
        self.forward({log: (self.run_dir / f"{log}.jsonl").stat().st_size for log in LOGS})
        cost = {"elapsed_s": summary.get("elapsed_s"), **summary.get("cost", {})}
        for logger in self.loggers.values():
            logger.log_metrics(_scalars(cost, "cost/"), step=self.total)
        self.close()

    def close(self, failed: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for kind, logger in self.loggers.items():
            if kind == "wandb" and failed:  # W&B marks the run failed; resuming it goes on in the same run
                logger.experiment.finish(exit_code=1)
            else:
                logger.shutdown()

    def _send_record(self, kind: str, logger: Logger) -> None:
        """The resolved config and the provenance, as text at step 0 (W&B holds them in its run config)."""
        if kind == "wandb":
            return
        for tag, file in (("run/config", "config.yaml"), ("run/provenance", "provenance.json")):
            _text(kind, logger, tag, (self.run_dir / file).read_text(), 0)

    def _send_metrics(self, logger: Logger, line: dict) -> None:
        scalars = _scalars({k: v for k, v in line.items() if k not in BOOKKEEPING}, f"train/{line['stage']}/")
        if scalars:  # a reused shared stage's line holds no measurement
            logger.log_metrics(scalars, step=line["global_step"])

    def _send_eval(self, kind: str, logger: Logger, line: dict) -> None:
        step = self.offsets[line["stage"]] + line["step"]
        values = {k: v for k, v in line.items() if k not in BOOKKEEPING | {"time", "protocol"}}
        logger.log_metrics(_scalars(values, "eval/"), step=step)
        _text(kind, logger, "eval/protocol", json.dumps(line.get("protocol"), indent=2, sort_keys=True), step)


def _scalars(values: dict, prefix: str) -> dict[str, float]:
    """The numbers of ``values``, nested dicts flattened (``samples/modes_hit``); lists and text left out."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_scalars(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def _text(kind: str, logger: Logger, tag: str, text: str, step: int) -> None:
    if kind == "wandb":
        logger.log_str(tag, text, step=step)
    elif kind == "tensorboard":  # TensorBoard renders Markdown: indented, the text stays as it is
        logger.experiment.add_text(tag, "\n".join("    " + line for line in text.splitlines()), global_step=step)
    else:
        logger.experiment.add_text(tag, text, global_step=step)


def _lines(path: Path, start: int, end: int) -> Iterator[dict]:
    """The JSON lines between two byte offsets of a log (offsets that a checkpoint recorded: line ends)."""
    if end <= start:
        return
    with open(path, "rb") as fh:
        fh.seek(start)
        chunk = fh.read(end - start)
    for line in chunk.decode().splitlines():
        if line.strip():
            yield json.loads(line)


def _read_state(run_dir: Path) -> dict:
    path = run_dir / STATE
    return json.loads(path.read_text()) if path.is_file() else {}


# -- the loggers ----------------------------------------------------------------------------------------
def _tensorboard(run_dir: Path, name: str, settings: LoggerSettings, state: dict) -> Logger:
    from torchrl.record.loggers import TensorboardLogger

    # RUN_DIR/tensorboard: `tensorboard --logdir runs/` names each run by its path, algorithm/task/seedN/...
    return TensorboardLogger(exp_name="tensorboard", log_dir=str(run_dir))


def _csv(run_dir: Path, name: str, settings: LoggerSettings, state: dict) -> Logger:
    from torchrl.record.loggers import CSVLogger

    return CSVLogger(exp_name="csv", log_dir=str(run_dir))


def _wandb(run_dir: Path, name: str, settings: LoggerSettings, state: dict) -> Logger:
    import wandb
    from torchrl.record.loggers import WandbLogger

    mode, why = wandb_mode()
    offline = mode in ("offline", "dryrun")
    state.setdefault("wandb_id", secrets.token_hex(4))
    logger = WandbLogger(
        exp_name=name,
        save_dir=str(run_dir),
        id=state["wandb_id"],
        project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
        # wandb reads its environment once per process; read here, they hold for every run of the process
        group=settings.group or os.environ.get("WANDB_RUN_GROUP"),
        mode=mode,
        log_env_packages=False,  # provenance.json holds the versions that matter
        reinit="create_new",  # --vectorize-seeds: one process holds a W&B run per seed
        settings=wandb.Settings(quiet=True, silent=offline, console="off"),  # offline: the one line below
    )
    logger.log_hparams(
        {
            "config": _yaml(run_dir / "config.yaml"),
            "provenance": json.loads((run_dir / "provenance.json").read_text()),
        }
    )
    if offline:
        sync = logger.experiment.settings.sync_dir
        print(f"wandb: offline mode ({why}); sync later with: wandb sync {sync}", file=sys.stderr, flush=True)
    return logger


OPENERS: dict[str, Callable[[Path, str, LoggerSettings, dict], Logger]] = {
    "tensorboard": _tensorboard,
    "wandb": _wandb,
    "csv": _csv,
}


def wandb_mode() -> tuple[str, str]:
    """W&B's mode and why: WANDB_MODE when set, else online, or offline without an API key or network."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"], f"WANDB_MODE={os.environ['WANDB_MODE']}"
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    if not (os.environ.get("WANDB_API_KEY") or _netrc_has(host)):
        return "offline", "no API key"
    if not _reachable(host):
        return "offline", f"{host} unreachable"
    return "online", ""


def _netrc_has(host: str) -> bool:
    """Whether ``wandb login`` saved a key for ``host`` (in $NETRC, else ~/.netrc)."""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return path.is_file() and netrc(path).authenticators(host) is not None
    except (OSError, NetrcParseError):
        return False


def _reachable(host: str, timeout_s: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())
