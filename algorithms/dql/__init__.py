from offrl_zoo.algorithms.dql.dql import DQL, DQLConfig

__all__ = ["DQL", "DQLConfig"]
