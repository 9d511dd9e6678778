from .dtql import DTQL, DTQLConfig

__all__ = ["DTQL", "DTQLConfig"]
