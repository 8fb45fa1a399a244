"""The lecture's adversarial-training experiment: learning curves of a clean and an
adversarially trained maxout network (Goodfellow et al. 2014)."""

from __future__ import annotations

from typing import Any

from advlab.experiments.context import ExperimentContext
from advlab.experiments.recipes import ADV_CURVES, adv_curves_recipe

__all__ = ["learning_curves"]


def learning_curves(ctx: ExperimentContext) -> dict[str, list[dict[str, Any]]]:
    """Train (or read back from the cache) the ``"clean"`` and ``"adversarial"`` runs.

    After every epoch the fit loop measures clean, FGSM and PGD test error on the first
    test images; the curves live in the cached checkpoints' history.

    Returns:
        ``{label: per-epoch history dicts}``.
    """
    r = ADV_CURVES["quick" if ctx.quick else "full"]
    test = ctx.test.subset(limit=min(len(ctx.test), r["curve_n"]))
    return {label: ctx.train_recipe(adv_curves_recipe(label, ctx.quick, ctx.seed), test=test,
                                    meta={"lecture": "adv_training"}).history
            for label in ("clean", "adversarial")}
