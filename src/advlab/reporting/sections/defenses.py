"""Report sections for defenses: the adversarial-training learning curves of the lecture.

Two copies of Goodfellow et al.'s maxout network are trained on the same data, one
on clean inputs and one with the alpha = 0.5 FGSM objective at eps = 0.25; after
every epoch the fit loop measures clean, FGSM and PGD test error at eps = 0.25.
The runs are :func:`advlab.experiments.adv_training.learning_curves`, checkpointed in
the lecture's model cache (the curves live in the checkpoint's history), so a second
report reads them back at no cost.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from advlab.experiments.adv_training import learning_curves
from advlab.experiments.recipes import ADV_CURVES, ADV_CURVES_EPS, ADV_CURVES_MODEL
from advlab.reporting import figures
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section

EPS = ADV_CURVES_EPS
PUBLISHED = {"clean_trained_fgsm_error": 0.894, "adv_trained_fgsm_error": 0.179,
             "clean_trained_clean_error": 0.0094, "adv_trained_clean_error": 0.0084}


def learning_curves_figure(runs: dict[str, list[dict[str, Any]]], eps: float) -> Figure:
    """The lecture's four curves: FGSM and clean test error of a clean and an adversarially
    trained model, per epoch (PGD error dotted)."""
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    styles = {"clean": "tab:red", "adversarial": "tab:blue"}
    names = {"clean": "clean training", "adversarial": "adversarial training"}
    for label, hist in runs.items():
        ep = [h["epoch"] for h in hist]
        c = styles[label]
        ax.plot(ep, [100 * h["extra"]["fgsm_error"] for h in hist], "-o", ms=3, color=c,
                label=f"{names[label]}: FGSM error")
        ax.plot(ep, [100 * h["extra"]["pgd_error"] for h in hist], ":", color=c,
                label=f"{names[label]}: PGD error")
        ax.plot(ep, [100 * h["extra"]["clean_error"] for h in hist], "--s", ms=3, color=c,
                label=f"{names[label]}: clean error")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test error (%), eps = {eps}")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Learning curves: adversarial vs clean training (maxout)", fontsize=10)
    return fig


@section("adv_training", "Adversarial training: learning curves (Goodfellow et al. 2014)")
def adv_training_section(ctx: LectureContext) -> Section:
    recipe = dict(ADV_CURVES["quick" if ctx.quick else "full"])
    runs = learning_curves(ctx)
    final = {label: hist[-1]["extra"] for label, hist in runs.items()}
    passes = {label: sum(h["passes"] for h in hist) for label, hist in runs.items()}
    table = [{"epoch": a["epoch"], "clean": a["extra"], "adversarial": b["extra"]}
             for a, b in zip(runs["clean"], runs["adversarial"], strict=True)]
    arch, settings = ADV_CURVES_MODEL
    data = {"eps": EPS, "recipe": recipe, "model": f"{arch} {dict(settings)}", "final": final,
            "passes": passes, "table": table, "published": PUBLISHED,
            "dataset": ctx.train.name}
    fig = learning_curves_figure(runs, EPS)
    return Section("adv_training", "", data=data,
                   figures={"curves": figures.figure_to_data_uri(fig)})
