from offrl_zoo.algorithms.iql.iql import IQL, IQLConfig

__all__ = ["IQL", "IQLConfig"]
