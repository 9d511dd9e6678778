"""Algorithm registry: every algorithm, built-in or plugin, is an entry point of the ``offrl_zoo.algorithms``
group; the built-ins are those of the offrl-zoo distribution itself (listed in its pyproject.toml)."""

from __future__ import annotations

import difflib
import warnings
from importlib.metadata import EntryPoint, entry_points

from offrl_zoo.algorithm import Algorithm, BaseConfig
from offrl_zoo.errors import PluginError, UnknownNameError

ENTRY_POINT_GROUP = "offrl_zoo.algorithms"
# The distribution whose entry points are the built-ins (pyproject.toml lists them like any plugin's).
BUILTIN_DISTRIBUTION = "offrl-zoo"

_registered: dict[str, type[Algorithm]] = {}
_warned: set[tuple[str, str]] = set()  # (name, package) of shadowed plugins already warned about


class PluginWarning(UserWarning):
    """A plugin entry point that offrl-zoo does not use (it has a built-in's name)."""


def suggest(kind: str, name: str, valid: list[str]) -> UnknownNameError:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(valid))}")


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Register an algorithm class in this process (packages normally use the entry point instead)."""
    _check_class(cls, origin=f"{cls.__module__}.{cls.__qualname__}")
    _registered[cls.name] = cls
    return cls


def _is_builtin(ep: EntryPoint) -> bool:
    return ep.dist is not None and ep.dist.name == BUILTIN_DISTRIBUTION


def _package(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else f"the module {ep.module}"


def _entry_points() -> dict[str, EntryPoint]:
    """name -> entry point; a built-in wins over a plugin of the same name, which is warned about once."""
    found: dict[str, EntryPoint] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_is_builtin):
        if ep.name in found and _is_builtin(ep) and not _is_builtin(found[ep.name]):
            _warn_shadowed(found[ep.name])
        found[ep.name] = ep
    return found


def _warn_shadowed(plugin: EntryPoint) -> None:
    if (plugin.name, _package(plugin)) in _warned:
        return
    _warned.add((plugin.name, _package(plugin)))
    warnings.warn(
        f"plugin package {_package(plugin)!r} registers an algorithm named {plugin.name!r} ({plugin.value}), "
        f"which is a built-in name: offrl-zoo uses its built-in {plugin.name!r}; rename the plugin's entry point "
        "to use it",
        PluginWarning,
        stacklevel=3,
    )


def builtins() -> list[str]:
    """Names of the algorithms shipped with offrl-zoo (its own entry points)."""
    return sorted(name for name, ep in _entry_points().items() if _is_builtin(ep))


def available() -> dict[str, str]:
    """All algorithm names with where they come from ("builtin", "plugin:<module>" or "registered")."""
    names = {name: "builtin" if _is_builtin(ep) else f"plugin:{ep.value}" for name, ep in _entry_points().items()}
    for name in _registered:
        names.setdefault(name, "registered")
    return names


def provenance(name: str) -> dict[str, str | None]:
    """Where algorithm ``name`` comes from, for a run's provenance: built-in, plugin or registered in-process,
    its distribution and version (a plugin's own, not offrl-zoo's), entry point and module."""
    cls = get(name)
    ep = None if name in _registered and name not in _entry_points() else _entry_points().get(name)
    dist = None if ep is None else ep.dist
    kind = "registered" if ep is None else "builtin" if _is_builtin(ep) else "plugin"
    return {
        "name": name,
        "kind": kind,
        "package": None if dist is None else dist.name,
        "version": None if dist is None else dist.version,
        "entry_point": None if ep is None else ep.value,
        "module": cls.__module__,
    }


def get(name: str) -> type[Algorithm]:
    if name in _registered:
        return _registered[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise suggest("algorithm", name, list(available()))
    origin = f"{ep.value} (algorithm {name!r} of {_package(ep)})"
    try:
        cls = ep.load()
    except Exception as err:  # a plugin's import can fail in any way; it must not take the CLI down
        detail = " ".join(f"{type(err).__name__}: {err}".split())
        raise PluginError(f"{origin}: cannot be loaded ({detail})") from err
    _check_class(cls, origin=origin)
    if cls.name != name:
        raise PluginError(f"{origin}: registered as {name!r} but its class says name={cls.name!r}")
    _registered[name] = cls
    return cls


def _check_class(cls: object, origin: str) -> None:
    """Refuse what is not an algorithm class (a ``PluginError``, which is also a ``TypeError``)."""
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise PluginError(f"{origin}: an algorithm must subclass offrl_zoo.Algorithm, got {cls!r}")
    for attr in ("name", "Config"):
        if not hasattr(cls, attr):
            raise PluginError(f"{origin}: algorithm class lacks the class attribute {attr!r}")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, BaseConfig)):
        raise PluginError(f"{origin}: {cls.__name__}.Config must be a dataclass subclassing offrl_zoo.BaseConfig")
