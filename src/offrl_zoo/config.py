"""Algorithm configs with OmegaConf, merged in layers, each resolved value tagged with where it came from.

Layers (later wins): the Config dataclass defaults (the official implementation's values) ←
``tasks.yaml`` entries whose pattern matches the task ← a named preset (its defaults, then its own task
entries) ← a user YAML file ← the command line's ``key=value`` list.

``tasks.yaml`` and preset files map task patterns to tagged values::

    "hopper-*|walker2d-*":            # fnmatch patterns, '|' separates alternatives; file order applies
      expectile: {value: 0.7, source: paper}   # source: paper | official-code | tuned-here

A preset may declare ``scope``, the task pattern it is made for (DTQL's ``quick``: ``toy-*``); it is
refused on any other task, so a setting tuned for one suite never lands on another.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
from pathlib import Path
from typing import Any, cast

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from offrl_zoo.algorithm import Algorithm, BaseConfig
from offrl_zoo.errors import ConfigError, UnsupportedTaskError

SOURCES = ("paper", "official-code", "tuned-here")


def algorithm_dir(algo_cls: type[Algorithm]) -> Path:
    return Path(inspect.getfile(algo_cls)).parent


def field_names(config_cls: type[BaseConfig]) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls)]


def check_keys(keys: list[str], config_cls: type[BaseConfig], where: str) -> None:
    valid = field_names(config_cls)
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}.{hint} Valid keys: {', '.join(valid)}")


def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as fh:
            content = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read YAML ({err})") from err
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(content).__name__}")
    return content


def matches(pattern: str, task_id: str) -> bool:
    return any(fnmatch.fnmatchcase(task_id, alt.strip()) for alt in str(pattern).split("|"))


def tagged_entries(table: dict, task_id: str, origin: str) -> list[tuple[str, str, Any, str]]:
    """(key, value-origin, value, source) for each entry of a pattern table that matches ``task_id``."""
    out = []
    for pattern, entries in table.items():
        if not matches(pattern, task_id):
            continue
        if not isinstance(entries, dict):
            raise ConfigError(f"{origin}[{pattern}]: expected a mapping of key: {{value, source}}")
        for key, tagged in entries.items():
            if not (isinstance(tagged, dict) and set(tagged) == {"value", "source"}):
                raise ConfigError(f"{origin}[{pattern}].{key}: expected {{value: ..., source: ...}}, got {tagged!r}")
            if tagged["source"] not in SOURCES:
                raise ConfigError(
                    f"{origin}[{pattern}].{key}: source {tagged['source']!r} is not one of {', '.join(SOURCES)}"
                )
            out.append((key, f"{origin}[{pattern}]", tagged["value"], tagged["source"]))
    return out


def lineage(algo_cls: type[Algorithm]) -> list[type[Algorithm]]:
    """The registered algorithm classes ``algo_cls`` derives from, most distant first, itself last.

    A variant (a subclass, e.g. DTQL-KL of DTQL) inherits its parents' task tables and presets, so
    each file states only what differs from its parent.
    """
    return [
        c for c in reversed(algo_cls.__mro__) if isinstance(c, type) and issubclass(c, Algorithm) and "name" in vars(c)
    ]


def preset_files(algo_cls: type[Algorithm]) -> dict[str, Path]:
    """Preset name → file; an algorithm's own presets shadow its parents' of the same name."""
    files: dict[str, Path] = {}
    for cls in lineage(algo_cls):
        folder = algorithm_dir(cls) / "presets"
        files.update({p.stem: p for p in folder.glob("*.yaml")} if folder.is_dir() else {})
    return files


def presets(algo_cls: type[Algorithm]) -> list[str]:
    return sorted(preset_files(algo_cls))


PRESET_SECTIONS = ("description", "scope", "defaults", "tasks")


def read_preset(algo_cls: type[Algorithm], name: str) -> dict:
    """A preset's checked sections; an unknown name fails with the known ones."""
    path = preset_files(algo_cls).get(name)
    if path is None:
        known = presets(algo_cls)
        raise ConfigError(f"preset {name!r} unknown for {algo_cls.name}; known presets: {', '.join(known) or 'none'}")
    content = _read_yaml(path)
    unknown = set(content) - set(PRESET_SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown sections {sorted(unknown)}; expected {', '.join(PRESET_SECTIONS)}")
    scope = content.get("scope")
    if scope is not None and not (isinstance(scope, str) and scope.strip()):
        raise ConfigError(f"{path}: scope must be a task pattern such as 'toy-*', got {scope!r}")
    return content


def preset_scope(algo_cls: type[Algorithm], name: str) -> str | None:
    """The task pattern a preset is made for, or None when it is made for every task."""
    return read_preset(algo_cls, name).get("scope")


def preset_applies(algo_cls: type[Algorithm], name: str, task_id: str) -> bool:
    scope = preset_scope(algo_cls, name)
    return scope is None or matches(scope, task_id)


def check_preset_scope(algo_cls: type[Algorithm], name: str, task_id: str) -> None:
    """Refuse a preset on a task it was not made for (a toy budget on a locomotion task, say)."""
    if not preset_applies(algo_cls, name, task_id):
        raise ConfigError(
            f"preset {name!r} of {algo_cls.name} is made for tasks {preset_scope(algo_cls, name)!r} only, "
            f"not {task_id}: leave out --preset or pick a task in its scope"
        )


def check_supported(algo_cls: type[Algorithm], task_id: str, sources: dict[str, str]) -> None:
    """Refuse a task the official code has no settings for, unless the user supplied the missing key."""
    for pattern, (reason, key) in algo_cls.unsupported_tasks.items():
        user_set = key in sources and "tasks.yaml" not in sources[key]  # a preset, user file or the CLI
        if matches(pattern, task_id) and not user_set:
            raise UnsupportedTaskError(
                f"{algo_cls.name} does not support {task_id}: {reason}. Set {key}=... yourself to run it anyway "
                "(the value is then recorded as yours, not the paper's)."
            )


@dataclasses.dataclass
class ResolvedConfig:
    config: BaseConfig
    sources: dict[str, str]  # key -> where its value came from (only keys that differ from the default)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self.config)


def resolve(
    algo_cls: type[Algorithm],
    task_id: str,
    preset: str | None = None,
    user_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> ResolvedConfig:
    """The algorithm's config for a task after all layers; errors name the key and the layer."""
    config_cls = algo_cls.Config
    cfg = OmegaConf.structured(config_cls)
    sources: dict[str, str] = {}

    def apply(values: dict, origin_of: dict[str, str], where: str) -> None:
        nonlocal cfg
        check_keys(list(values), config_cls, where)
        try:
            cfg = OmegaConf.merge(cfg, values)
        except (OmegaConfBaseException, TypeError) as err:  # TypeError: a mapping given for a list
            key = getattr(err, "full_key", None) or ", ".join(values)
            detail = str(getattr(err, "msg", err)).splitlines()[0]  # OmegaConf appends key/type lines
            raise ConfigError(f"{where}: bad value for {key!r}: {detail}") from None
        sources.update(origin_of)

    def apply_table(table: dict, origin: str) -> None:
        for key, where, value, source in tagged_entries(table, task_id, origin):
            apply({key: value}, {key: f"{where} ({source})"}, where)

    for cls in lineage(algo_cls):  # parents' task tables first (see `lineage`)
        if (algorithm_dir(cls) / "tasks.yaml").is_file():
            apply_table(_read_yaml(algorithm_dir(cls) / "tasks.yaml"), f"{cls.name}/tasks.yaml")
    if preset is not None:
        check_preset_scope(algo_cls, preset, task_id)
        content = read_preset(algo_cls, preset)
        apply_table({"*": content.get("defaults", {})}, f"preset {preset}")
        apply_table(content.get("tasks", {}), f"preset {preset}")
    if user_file is not None:
        values = _read_yaml(Path(user_file))
        apply(values, dict.fromkeys(values, str(user_file)), str(user_file))
    for item in overrides:  # one by one: an item a later one replaces is checked all the same
        values = parse_override(item)
        apply(values, dict.fromkeys(values, "command line"), "command line")
    check_supported(algo_cls, task_id, sources)
    try:
        obj = cast(BaseConfig, OmegaConf.to_object(cfg))  # a structured config of ``config_cls``
    except (ValueError, TypeError, OmegaConfBaseException) as err:  # the last: a ${...} that does not resolve
        detail = " ".join(str(getattr(err, "msg", err)).split(" full_key:")[0].split())  # OmegaConf adds key lines
        full_key = getattr(err, "full_key", None)  # OmegaConf's errors have it
        key = f"{full_key}: " if full_key else ""
        raise ConfigError(f"{algo_cls.name} config for {task_id}: {key}{detail}") from None
    return ResolvedConfig(obj, sources)


def parse_override(item: str) -> dict[str, Any]:
    """A command-line ``key=value`` item as ``{key: value}``; a malformed one is refused with what YAML
    found wrong in it."""
    key, sep, _ = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"command-line override {item!r}: expected key=value")
    if not key.isidentifier():  # `hidden.0=…` or `a[0]=…`: the configs are flat
        raise ConfigError(
            f"command-line override {item!r}: {key!r} is not a key; give whole values, e.g. hidden=[256,256]"
        )
    try:
        # a DictConfig converts to a dict (the stubs give every container type)
        return cast(dict[str, Any], OmegaConf.to_container(OmegaConf.from_dotlist([item])))
    except (OmegaConfBaseException, yaml.YAMLError) as err:
        detail = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"command-line override {item!r}: not a valid value ({detail})") from None
