from .idql import IDQL, IDQLConfig

__all__ = ["IDQL", "IDQLConfig"]
