"""Algorithm registry: built-ins plus third-party plugins from the ``offrl_zoo.algorithms`` entry points."""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points

from offrl_zoo.algorithm import Algorithm, BaseConfig
from offrl_zoo.errors import UnknownNameError

ENTRY_POINT_GROUP = "offrl_zoo.algorithms"

# name -> "module:Class"; imported on first use so `offrl-zoo list` stays fast.
BUILTINS: dict[str, str] = {
    "bc": "offrl_zoo.algorithms.bc:BC",
    "td3bc": "offrl_zoo.algorithms.td3bc:TD3BC",
    "iql": "offrl_zoo.algorithms.iql:IQL",
    "dtql": "offrl_zoo.algorithms.dtql:DTQL",
    "dtql-kl": "offrl_zoo.algorithms.dtql_kl:DTQLKL",
    "dql": "offrl_zoo.algorithms.dql:DQL",
    "idql": "offrl_zoo.algorithms.idql:IDQL",
    "srpo": "offrl_zoo.algorithms.srpo:SRPO",
}

_registered: dict[str, type[Algorithm]] = {}


def suggest(kind: str, name: str, valid: list[str]) -> UnknownNameError:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(valid))}")


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Register an algorithm class in this process (plugins normally use the entry point instead)."""
    _check_class(cls, origin=f"{cls.__module__}.{cls.__qualname__}")
    _registered[cls.name] = cls
    return cls


def _plugin_targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> dict[str, str]:
    """All algorithm names with where they come from ("builtin", "plugin:<module>" or "registered")."""
    names = {name: "builtin" for name in BUILTINS}
    for name, target in _plugin_targets().items():
        names.setdefault(name, f"plugin:{target}")
    for name in _registered:
        names.setdefault(name, "registered")
    return names


def get(name: str) -> type[Algorithm]:
    if name in _registered:
        return _registered[name]
    target = BUILTINS.get(name) or _plugin_targets().get(name)
    if target is None:
        raise suggest("algorithm", name, list(available()))
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    _check_class(cls, origin=target)
    if cls.name != name:
        raise TypeError(f"{target}: registered as {name!r} but its class says name={cls.name!r}")
    _registered[name] = cls
    return cls


def _check_class(cls: object, origin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise TypeError(f"{origin}: an algorithm must subclass offrl_zoo.Algorithm, got {cls!r}")
    for attr in ("name", "Config"):
        if not hasattr(cls, attr):
            raise TypeError(f"{origin}: algorithm class lacks the class attribute {attr!r}")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, BaseConfig)):
        raise TypeError(f"{origin}: {cls.__name__}.Config must be a dataclass subclassing offrl_zoo.BaseConfig")
