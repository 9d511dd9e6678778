from offrl_zoo.algorithms.srpo.srpo import SRPO, SRPOConfig

__all__ = ["SRPO", "SRPOConfig"]
