"""Shared network building blocks."""

from offrl_zoo.nets.activations import Mish
from offrl_zoo.nets.ensemble import EnsembleLinear, EnsembleMLP, QEnsemble
from offrl_zoo.nets.mlp import frozen, frozen_copy, init_weights_, mlp, orthogonal_init_, polyak_update_
from offrl_zoo.nets.policies import DeterministicActor, GaussianPolicy, TanhGaussianPolicy
from offrl_zoo.nets.selection import describe_selection, select_candidates

__all__ = [
    "DeterministicActor",
    "EnsembleLinear",
    "EnsembleMLP",
    "GaussianPolicy",
    "Mish",
    "QEnsemble",
    "frozen",
    "frozen_copy",
    "init_weights_",
    "mlp",
    "orthogonal_init_",
    "polyak_update_",
    "describe_selection",
    "select_candidates",
    "TanhGaussianPolicy",
]
