from .dtql_kl import DTQLKL, DTQLKLConfig

__all__ = ["DTQLKL", "DTQLKLConfig"]
