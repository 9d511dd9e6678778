"""offrl-zoo: offline RL algorithms behind one interface, on TorchRL replay buffers."""

from offrl_zoo.algorithm import Algorithm, BaseConfig, Stage
from offrl_zoo.registry import register
from offrl_zoo.spec import DataSpec

__version__ = "0.1.0"
__all__ = ["Algorithm", "BaseConfig", "DataSpec", "Stage", "register"]
