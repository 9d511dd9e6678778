from .srpo import SRPO, SRPOConfig

__all__ = ["SRPO", "SRPOConfig"]
