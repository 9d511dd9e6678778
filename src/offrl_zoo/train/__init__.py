"""Training and evaluation harness shared by every algorithm."""

from offrl_zoo.train.evaluator import Evaluator
from offrl_zoo.train.run import RunRequest, load_run, train
from offrl_zoo.train.trainer import Trainer, TrainerSettings, TrainingDiverged

__all__ = ["Evaluator", "RunRequest", "Trainer", "TrainerSettings", "TrainingDiverged", "load_run", "train"]
