"""Data layer: sources → ``Dataset`` (TensorDict + spec + provenance) → transforms → replay buffer."""

from offrl_zoo.data.buffer import make_replay_buffer
from offrl_zoo.data.dataset import Dataset, DatasetError, Provenance, transitions_from_arrays
from offrl_zoo.data.loading import load_dataset
from offrl_zoo.data.transforms import prepare

__all__ = [
    "Dataset",
    "DatasetError",
    "Provenance",
    "load_dataset",
    "make_replay_buffer",
    "prepare",
    "transitions_from_arrays",
]
