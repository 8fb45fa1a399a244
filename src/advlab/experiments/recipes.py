"""The lecture's model recipes, as plain data (nothing here changes at import time).

:data:`MODEL_RECIPES` maps a model name to its recipe table entry: ``settings`` (model
settings), ``full``/``quick`` (training-config fields of the full and the quick report),
``quick_limit``/``limit`` (training examples in quick/full mode) and optionally
``model`` (registry name, default: the name), ``classes`` (class filter, relabelled)
and ``objective`` (a zero-argument factory of the training objective).
:func:`lecture_recipe` turns an entry into a :class:`~advlab.experiments.cache.Recipe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.defenses import FGSMTraining
from advlab.defenses.adversarial_training import FastFGSMTraining
from advlab.experiments.cache import Recipe

__all__ = ["MODEL_RECIPES", "SigmoidObjective", "fgsm_rs_objective", "lecture_recipe",
           "adv_curves_recipe", "half_mlp_recipe", "ADV_CURVES", "ADV_CURVES_EPS", "HALF_TRAIN"]


class SigmoidObjective:
    """Per-class sigmoid cross-entropy on the logits (each class "present" or not)."""

    name = "per-class-sigmoid"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        logits = model(x)
        onehot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, onehot, reduction="sum") / x.shape[0]
        return loss, logits, 1

    def settings(self) -> dict[str, Any]:
        return {"defense": "none", "loss": self.name}


def fgsm_rs_objective() -> FastFGSMTraining:
    """Fast adversarial training at eps 0.3 (FGSM from a random start; Wong et al. 2020)."""
    return FastFGSMTraining(eps=0.3)


def _frozen(d: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(d)


_SMALL_CNN = {"channels": [16, 32], "fc": 256}

#: how the lecture trains each model (see the module docstring); read-only
MODEL_RECIPES: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "softmax": _frozen({"settings": {}, "full": {"epochs": 3, "lr": 3e-3},
                        "quick": {"epochs": 1, "lr": 3e-3}, "quick_limit": 10000}),
    "cnn": _frozen({"settings": {}, "full": {"epochs": 2, "lr": 1e-3},
                    "quick": {"epochs": 1, "lr": 1e-3}, "quick_limit": 10000}),
    # binary logistic regression on 3s vs 7s (Goodfellow et al. 2014, figure 2)
    "analysis_logistic37": _frozen({"model": "logistic", "classes": [3, 7], "settings": {},
                                    "full": {"epochs": 5, "lr": 1e-2, "batch_size": 64},
                                    "quick": {"epochs": 3, "lr": 1e-2, "batch_size": 64},
                                    "quick_limit": 4000}),
    # shallow RBF network (one template per class, per-class sigmoid outputs)
    "analysis_rbf": _frozen({"model": "rbf", "settings": {},
                             "full": {"epochs": 3, "lr": 1e-2}, "quick": {"epochs": 2, "lr": 1e-2},
                             "quick_limit": 10000}),
    # a second, independently trained CNN (other width, hence other initialization and data order)
    "analysis_cnn_b": _frozen({"model": "cnn", "settings": _SMALL_CNN,
                               "full": {"epochs": 1, "lr": 1e-3}, "quick": {"epochs": 1, "lr": 1e-3},
                               "limit": 30000, "quick_limit": 5000}),
    # the same small CNN trained with per-class sigmoid outputs (for the noise experiment)
    "analysis_cnn_sigmoid": _frozen({"model": "cnn", "settings": _SMALL_CNN,
                                     "objective": SigmoidObjective,
                                     "full": {"epochs": 1, "lr": 1e-3},
                                     "quick": {"epochs": 1, "lr": 1e-3},
                                     "limit": 30000, "quick_limit": 5000}),
    # a small CNN (a different architecture from the lecture's CNN) for the ensemble attack
    "transfer_cnn_small": _frozen({"model": "cnn", "settings": {"channels": [16, 32], "fc": 128},
                                   "full": {"epochs": 1, "lr": 1e-3}, "quick": {"epochs": 1, "lr": 1e-3},
                                   "limit": 10000, "quick_limit": 3000}),
    # An adversarially trained CNN small enough for the lecture's budget: fast adversarial
    # training (FGSM from an unclipped random start, step 1.25 eps, cyclic LR; Wong et al.
    # 2020) at eps 0.3 on Wong et al.'s strided CNN, widened (the network of
    # bench/adv_training.py, which reaches 87.6% under PGD-50x10 with the full 60k x 10 epochs).
    "cnn_fgsmrs": _frozen({"model": "strided-cnn", "settings": {"channels": [32, 64], "fc": 1024},
                           "objective": fgsm_rs_objective,
                           "full": {"epochs": 4, "lr": 5e-3, "batch_size": 100, "lr_schedule": "cyclic"},
                           "limit": 10000,
                           "quick": {"epochs": 2, "lr": 5e-3, "batch_size": 100, "lr_schedule": "cyclic"},
                           "quick_limit": 3000}),
})


def lecture_recipe(name: str, quick: bool, seed: int = 0) -> Recipe:
    """The :class:`Recipe` of the lecture model ``name`` (a key of :data:`MODEL_RECIPES`).

    Args:
        name: the model's name.
        quick: the quick report's variant (fewer epochs and examples).
        seed: training and initialisation seed.

    Raises:
        ValueError: ``name`` has no recipe.
    """
    if name not in MODEL_RECIPES:
        raise ValueError(f"no lecture recipe for model {name!r}; known: {sorted(MODEL_RECIPES)}")
    entry = MODEL_RECIPES[name]
    classes = entry.get("classes")
    return Recipe(name=name, model=entry.get("model", name), settings=dict(entry.get("settings", {})),
                  train=dict(entry["quick" if quick else "full"]), seed=seed,
                  objective=entry.get("objective"),
                  classes=list(classes) if classes is not None else None,
                  limit=entry.get("quick_limit") if quick else entry.get("limit"))


#: the adversarial-training learning curves (Goodfellow et al. 2014): Linf budget
ADV_CURVES_EPS = 0.25
#: their recipe, small enough for the lecture budget (full: ~150k example passes)
ADV_CURVES: Mapping[str, Mapping[str, int]] = MappingProxyType({
    "full": MappingProxyType({"n_train": 5000, "epochs": 6, "curve_n": 400, "pgd_steps": 5}),
    "quick": MappingProxyType({"n_train": 1000, "epochs": 3, "curve_n": 200, "pgd_steps": 5}),
})
#: the maxout network of the learning curves: (registry name, settings)
ADV_CURVES_MODEL: tuple[str, Mapping[str, Any]] = ("maxout", MappingProxyType({"hidden": [240, 240],
                                                                              "pieces": 5}))


def _adv_objective() -> FGSMTraining:
    return FGSMTraining(eps=ADV_CURVES_EPS, alpha=0.5)


def adv_curves_recipe(label: str, quick: bool, seed: int = 0) -> Recipe:
    """One run of the learning-curve experiment: ``label`` is ``"clean"`` or ``"adversarial"``
    (the alpha = 0.5 FGSM objective at eps = 0.25)."""
    if label not in ("clean", "adversarial"):
        raise ValueError(f"label must be 'clean' or 'adversarial', got {label!r}")
    r = ADV_CURVES["quick" if quick else "full"]
    arch, extra = ADV_CURVES_MODEL
    return Recipe(name=f"advcurves-{label}", model=arch, settings=dict(extra),
                  train={"epochs": r["epochs"], "batch_size": 100, "lr": 2e-3}, seed=seed,
                  objective=_adv_objective if label == "adversarial" else None,
                  limit=r["n_train"],
                  curves={"eps": ADV_CURVES_EPS, "pgd_steps": r["pgd_steps"], "n": None, "seed": seed})


#: training examples of each half-set MLP of the transfer sections (full / quick)
HALF_TRAIN: Mapping[bool, int] = MappingProxyType({False: 10000, True: 3000})


def half_mlp_recipe(half: int, n_train: int, quick: bool, seed: int = 0) -> Recipe:
    """An MLP trained on half ``half`` (0 or 1) of the first ``2 * n`` training images,
    ``n = min(HALF_TRAIN[quick], n_train // 2)``: two models that never saw the same example."""
    if half not in (0, 1):
        raise ValueError(f"half must be 0 or 1, got {half!r}")
    n = min(HALF_TRAIN[quick], n_train // 2)
    if n < 1:
        raise ValueError(f"{n_train} training examples cannot be split in two halves")
    return Recipe(name=f"mlp-half{half}", model="mlp", train={"epochs": 1 if quick else 2, "lr": 1e-3},
                  seed=seed + half, init_seed=seed + 17 * (half + 1), offset=half * n, limit=n)
