from offrl_zoo.algorithms.bc.bc import BC, BCConfig

__all__ = ["BC", "BCConfig"]
