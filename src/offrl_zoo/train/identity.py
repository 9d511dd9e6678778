"""Whether a run directory holds the requested experiment: its ``config.yaml`` against the record this
request would write, finished or not; the dataset compared by its SHA-256, not its path."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from offrl_zoo import registry
from offrl_zoo.errors import RunDirConflict
from offrl_zoo.io import write_text
from offrl_zoo.train.run_dir import FAILED, LOCK, TRAIN_LOG
from offrl_zoo.train.trainer import DONE


def check_identity(run_dir: Path, record: dict) -> None:
    """Refuse (``RunDirConflict``) a run directory whose ``config.yaml`` describes another experiment than
    ``record``, whether that run finished or not, or a folder that is no run directory. The dataset is
    compared by its SHA-256, so a file moved or renamed is the same data and another file is not."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        if run_dir.exists() and any(p.name not in (LOCK, FAILED, TRAIN_LOG) for p in run_dir.iterdir()):
            raise RunDirConflict(f"{run_dir} exists and is not an offrl-zoo run directory (no config.yaml)")
        return
    existing = yaml.safe_load(path.read_text())
    if not isinstance(existing, dict):
        raise RunDirConflict(f"{path} is not an offrl-zoo run record")
    _fill_new_defaults(existing, record)
    diff = _differences(existing, record)
    if diff:
        state = "a finished" if (run_dir / DONE).is_file() else "an unfinished"
        what = f"{existing.get('request', {}).get('algorithm')} on {existing.get('task')}"
        raise RunDirConflict(
            f"{run_dir} already holds a different run ({_described(diff)}; each as folder != request): "
            f"{state} run of {what}"
        )


def claim_run_dir(run_dir: Path, record: dict) -> None:
    """Write config.yaml for a new run (``check_identity`` has checked an existing one)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        write_text(path, yaml.safe_dump(record, sort_keys=False))


def _fill_new_defaults(existing: dict, record: dict) -> None:
    """A config field added after a run started is taken at its default, the behaviour the run had
    before the field existed, so upgrading offrl-zoo does not orphan unfinished runs."""
    algo_cls = registry.get(record["request"]["algorithm"])
    old = existing.get("algorithm_config")
    if isinstance(old, dict):
        for f in dataclasses.fields(algo_cls.Config):
            if f.name not in old and f.name in record["algorithm_config"]:
                old[f.name] = record["algorithm_config"][f.name] if _is_default(f, record) else "<absent>"


def _is_default(f: dataclasses.Field, record: dict) -> bool:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return yaml.safe_load(yaml.safe_dump(default)) == record["algorithm_config"][f.name]


# Differences that follow from another one (key → prefixes of its consequences), left out of a message.
_CONSEQUENCES = {
    "request.algorithm": ("algorithm_config.", "config_sources.", "spec."),
    "task": ("request.task", "dataset_sha256", "spec."),
    "dataset_sha256": ("spec.",),  # the data's statistics
}


def _described(diff: list[tuple[str, Any, Any]]) -> str:
    """The first five differences that do not follow from another one, as ``key: folder's != request's``."""
    keys = {key for key, _, _ in diff}
    shown = [(key, old, new) for key, old, new in diff if not _follows(key, keys)]
    return "; ".join(f"{key}: {_shown(key, old)} != {_shown(key, new)}" for key, old, new in shown[:5])


def _follows(key: str, keys: set[str]) -> bool:
    """Whether the difference at ``key`` follows from another one in ``keys``: what another algorithm, task
    or dataset brings (``_CONSEQUENCES``), or the origin of a config value that differs itself."""
    if key.startswith("config_sources.") and "algorithm_config." + key.removeprefix("config_sources.") in keys:
        return True
    return any(cause in keys and key.startswith(prefixes) for cause, prefixes in _CONSEQUENCES.items())


def _shown(key: str, value: Any) -> str:
    return f"{value[:12]}…" if key == "dataset_sha256" and isinstance(value, str) else repr(value)


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    # data_source only picks among files and a --dataset path only says where one lies: the dataset's
    # SHA-256 (compared) pins which data a run used.
    ignore = {
        "request.device",
        "request.download",
        "request.eval_every",
        "request.log_every",
        "request.data_source",
        "request.dataset",
    }
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            name = f"{prefix}{key}"
            if name in ignore:
                continue
            out += _differences(old.get(key), new.get(key), name + ".")
        return out
    new = yaml.safe_load(yaml.safe_dump(new))  # compare in the YAML round-tripped form
    return [] if old == new else [(prefix.rstrip("."), old, new)]
