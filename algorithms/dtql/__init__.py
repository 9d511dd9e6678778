from offrl_zoo.algorithms.dtql.dtql import DTQL, DTQLConfig

__all__ = ["DTQL", "DTQLConfig"]
