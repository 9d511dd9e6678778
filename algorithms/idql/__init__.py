from offrl_zoo.algorithms.idql.idql import IDQL, IDQLConfig

__all__ = ["IDQL", "IDQLConfig"]
