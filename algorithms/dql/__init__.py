from .dql import DQL, DQLConfig

__all__ = ["DQL", "DQLConfig"]
