from offrl_zoo.algorithms.dtql_kl.dtql_kl import DTQLKL, DTQLKLConfig

__all__ = ["DTQLKL", "DTQLKLConfig"]
