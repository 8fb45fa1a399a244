"""Defenses and the training loop."""

from advlab.defenses.trainer import (
    CleanObjective,
    EpochLog,
    TrainConfig,
    TrainingObjective,
    TrainResult,
    accuracy,
    fit,
)

__all__ = ["CleanObjective", "EpochLog", "TrainConfig", "TrainingObjective", "TrainResult",
           "accuracy", "fit"]
