from .iql import IQL, IQLConfig

__all__ = ["IQL", "IQLConfig"]
