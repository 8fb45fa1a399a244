"""Defenses and the training loop: adversarial training objectives, VAT, the fit loop."""

from advlab.defenses.adversarial_training import (
    TRADES,
    FastFGSMTraining,
    FGSMTraining,
    PGDTraining,
    perturb_fgsm,
    perturb_pgd,
    perturb_trades,
    unwrap,
)
from advlab.defenses.trainer import (
    CONFIG_VERSION,
    LR_SCHEDULES,
    CleanObjective,
    CurveConfig,
    EpochLog,
    LRSchedule,
    ScheduledTrainConfig,
    TrainConfig,
    TrainingObjective,
    TrainResult,
    accuracy,
    fit,
    learning_curve_point,
)
from advlab.defenses.vat import VAT, entropy, vat_direction, vat_loss, vat_perturbation

#: ``advlab train --defense`` names -> objective classes
DEFENSES = {
    "none": CleanObjective,
    "fgsm": FGSMTraining,
    "fgsm-rs": FastFGSMTraining,
    "pgd": PGDTraining,
    "trades": TRADES,
    "vat": VAT,
}

__all__ = ["CleanObjective", "EpochLog", "TrainConfig", "TrainingObjective", "TrainResult",
           "accuracy", "fit", "CurveConfig", "LRSchedule", "ScheduledTrainConfig", "LR_SCHEDULES",
           "CONFIG_VERSION",
           "learning_curve_point",
           "FGSMTraining", "FastFGSMTraining", "PGDTraining", "TRADES", "VAT", "DEFENSES",
           "perturb_fgsm", "perturb_pgd", "perturb_trades", "unwrap", "vat_direction",
           "vat_perturbation", "vat_loss", "entropy"]
