"""offrl-zoo: offline RL algorithms behind one interface, on TorchRL replay buffers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Resolved on first use so that `offrl-zoo --help` does not pay for importing torch.
_LAZY = {
    "Algorithm": "offrl_zoo.algorithm",
    "BaseConfig": "offrl_zoo.algorithm",
    "Stage": "offrl_zoo.algorithm",
    "DataSpec": "offrl_zoo.spec",
    "register": "offrl_zoo.registry",
}
__all__ = ["Algorithm", "BaseConfig", "DataSpec", "Stage", "register"]  # the keys of _LAZY

if TYPE_CHECKING:  # the same names, eagerly, for type checkers
    from offrl_zoo.algorithm import Algorithm, BaseConfig, Stage
    from offrl_zoo.registry import register
    from offrl_zoo.spec import DataSpec


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'offrl_zoo' has no attribute {name!r}")
