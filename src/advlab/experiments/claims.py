"""The lecture's remaining claims as experiments (``advlab analyze <name>``).

* ``xs-and-os``: the X's and O's slide on a 2-D toy (:func:`advlab.analysis.claims.xs_and_os`).
* ``linear-vs-deep-at``: the same FGSM adversarial-training recipe for softmax regression and
  the maxout network at eps = 0.25 (Goodfellow et al. 2014: maxout 89.4% -> 17.9% FGSM error;
  a linear model cannot be made robust).
* ``perturb-layer``: FGSM adversarial training with the step at the input, a hidden layer or
  the logits (the lecture's Q&A: perturbing the last layer "usually just breaks the whole
  process").

The numbers come back JSON-ready in :attr:`AnalysisRun.data`; the figures are drawn by
:mod:`advlab.reporting.figures_claims`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from advlab.analysis import claims as cl
from advlab.analysis.linear import linear_weights
from advlab.analysis.rbf import fgsm_comparison
from advlab.defenses import FGSMTraining
from advlab.experiments.analysis import AnalysisRun, _rounded, register_analysis
from advlab.experiments.cache import Recipe
from advlab.experiments.context import ExperimentContext
from advlab.experiments.recipes import ADV_CURVES, ADV_CURVES_EPS, ADV_CURVES_MODEL, adv_curves_recipe

__all__ = ["XsOsRun", "LinearDeepATRun", "PerturbLayerRun", "run_xs_and_os", "run_linear_vs_deep_at",
           "run_perturb_layer", "softmax_at_recipe", "layer_at_recipe", "PERTURB_LAYER"]


@dataclass
class XsOsRun(AnalysisRun):
    """:func:`run_xs_and_os`: the toy and its three fits."""

    result: cl.XsOsResult


@dataclass
class LinearDeepATRun(AnalysisRun):
    """:func:`run_linear_vs_deep_at`: rows per (model, training) and the softmax weights."""

    weights: dict[str, Any]  # "clean"/"adversarial" -> softmax input-space weights (K, C, H, W)


@dataclass
class PerturbLayerRun(AnalysisRun):
    """:func:`run_perturb_layer`: one row per place of the perturbation."""


# ============================================================================= 1. X's and O's


def run_xs_and_os(ctx: ExperimentContext, eps: float | None = None) -> XsOsRun:
    """The X's and O's toy: two wide ReLU fits (other seeds) and a linear fit, both stories measured."""
    res = cl.xs_and_os(eps=eps or 0.6, steps=300 if ctx.quick else 600,
                       resolution=81 if ctx.quick else 121, generator=ctx.generator())
    return XsOsRun(_rounded(res.to_dict()), res)


# ============================================================================= 2. linear vs deep AT


def _fgsm_objective() -> FGSMTraining:
    return FGSMTraining(eps=ADV_CURVES_EPS, alpha=0.5)


def softmax_at_recipe(label: str, quick: bool, seed: int = 0) -> Recipe:
    """Softmax regression trained exactly as the maxout runs of :func:`adv_curves_recipe`
    (same examples, epochs, batch size, learning rate and objective), without the curves."""
    if label not in ("clean", "adversarial"):
        raise ValueError(f"label must be 'clean' or 'adversarial', got {label!r}")
    r = ADV_CURVES["quick" if quick else "full"]
    return Recipe(name=f"claims-softmax-{label}", model="softmax",
                  train={"epochs": r["epochs"], "batch_size": 100, "lr": 2e-3}, seed=seed,
                  objective=_fgsm_objective if label == "adversarial" else None, limit=r["n_train"])


def run_linear_vs_deep_at(ctx: ExperimentContext, eps: float | None = None) -> LinearDeepATRun:
    """The same FGSM adversarial training (alpha 0.5, eps 0.25) for softmax regression and maxout.

    The maxout runs are the learning-curve runs of the adversarial-training section (read
    back from the cache when that section ran); the softmax runs use the same recipe.
    ``eps`` is the evaluation budget (default: the training budget, 0.25).
    """
    eps = eps or ADV_CURVES_EPS
    r = ADV_CURVES["quick" if ctx.quick else "full"]
    curve_test = ctx.test.subset(limit=min(len(ctx.test), r["curve_n"]))
    x, y = ctx.eval_data()
    rows, weights = [], {}
    for label in ("clean", "adversarial"):
        soft = ctx.train_recipe(softmax_at_recipe(label, ctx.quick, ctx.seed),
                                meta={"lecture": "claims_linear_vs_deep_at"}).model
        maxout = ctx.train_recipe(adv_curves_recipe(label, ctx.quick, ctx.seed), test=curve_test,
                                  meta={"lecture": "adv_training"}).model
        weights[label] = linear_weights(soft)
        for name, row in zip(("softmax regression", "maxout network"),
                             fgsm_comparison({"softmax": soft, "maxout": maxout}, x, y, eps), strict=True):
            rows.append({"model": name, "training": label, "clean_error": 1 - row.clean_acc,
                         "fgsm_error": row.adv_error_rate,
                         "mean_confidence_adv_mistakes": row.mean_confidence_adv_mistakes})
    sparsity = {label: cl.weight_sparsity(w) for label, w in weights.items()}
    arch, settings = ADV_CURVES_MODEL
    data = {"eps": eps, "train_eps": ADV_CURVES_EPS, "n": int(x.shape[0]), "rows": rows,
            "recipe": dict(r), "maxout": f"{arch} {dict(settings)}", "softmax_weights": sparsity,
            "published": cl.PUBLISHED_AT, "dataset": ctx.train.name}
    return LinearDeepATRun(_rounded(data), weights)


# ============================================================================= 3. where to perturb

#: the perturb-layer runs: (label, objective settings or None for clean training)
PERTURB_LAYER: tuple[tuple[str, dict[str, Any] | None], ...] = (
    ("clean training", None),
    ("input", {"layer": "input"}),
    ("hidden layer 1", {"layer": "hidden", "hidden_index": 2}),
    ("hidden layer 2", {"layer": "hidden", "hidden_index": 4}),
    ("logits", {"layer": "logits"}),
)


def layer_at_recipe(layer: dict[str, Any] | None, quick: bool, seed: int = 0, eps: float = 0.25) -> Recipe:
    """A 256-256 ReLU MLP trained with :class:`~advlab.analysis.claims.LayerFGSMTraining`
    (``layer``: its settings; ``None``: clean training), same data and seed for every layer."""
    tag = "clean" if layer is None else "-".join(str(v) for v in layer.values())
    objective = None if layer is None else partial(cl.LayerFGSMTraining, eps=eps, **layer)
    return Recipe(name=f"claims-layer-{tag}", model="mlp", settings={"hidden": [256, 256]},
                  train={"epochs": 1 if quick else 2, "batch_size": 100, "lr": 1e-3}, seed=seed,
                  objective=objective, limit=3000 if quick else 10000)


def run_perturb_layer(ctx: ExperimentContext, eps: float | None = None) -> PerturbLayerRun:
    """FGSM-AT (alpha 0.5) with the step at the input, after each hidden layer and at the logits;
    clean accuracy and input-space FGSM accuracy at ``eps`` (default 0.25) and ``eps / 2.5``."""
    eps = eps or 0.25
    x, y = ctx.eval_data()
    rows = []
    for label, layer in PERTURB_LAYER:
        tm = ctx.train_recipe(layer_at_recipe(layer, ctx.quick, ctx.seed, eps),
                              meta={"lecture": "claims_perturb_layer"})
        small, big = (fgsm_comparison({label: tm.model}, x, y, e)[0] for e in (eps / 2.5, eps))
        rows.append({"perturbed": label, "clean_acc": small.clean_acc,
                     "fgsm_acc_small": 1 - small.adv_error_rate, "fgsm_acc": 1 - big.adv_error_rate,
                     "final_train_loss": tm.history[-1]["loss"] if tm.history else None})
    data = {"eps": eps, "eps_small": eps / 2.5, "n": int(x.shape[0]), "rows": rows,
            "model": "MLP 256-256 (ReLU)", "dataset": ctx.train.name,
            "train_n": min(len(ctx.train), 3000 if ctx.quick else 10000),
            "epochs": 1 if ctx.quick else 2}
    return PerturbLayerRun(_rounded(data))


register_analysis("xs-and-os", run_xs_and_os, "claims_xs_and_os")
register_analysis("linear-vs-deep-at", run_linear_vs_deep_at, "claims_linear_vs_deep_at")
register_analysis("perturb-layer", run_perturb_layer, "claims_perturb_layer")
