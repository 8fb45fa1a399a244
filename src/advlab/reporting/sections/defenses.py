"""Report sections for defenses: the adversarial-training learning curves of the lecture.

Two copies of Goodfellow et al.'s maxout network are trained on the same data, one
on clean inputs and one with the alpha = 0.5 FGSM objective at eps = 0.25; after
every epoch the fit loop measures clean, FGSM and PGD test error at eps = 0.25.
Runs are checkpointed in the lecture's model cache (the curves live in the
checkpoint's history), so a second report reads them back at no cost.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from advlab import __version__
from advlab.checkpoint import META_FILE, read_metadata
from advlab.defenses import CurveConfig, FGSMTraining, TrainConfig, fit
from advlab.models import create_model
from advlab.reporting import figures
from advlab.reporting.html import Section
from advlab.reporting.lecture import LectureContext, section

log = logging.getLogger(__name__)

EPS = 0.25
#: the recipe: small enough for the lecture budget (full: ~150k example passes)
RECIPE = {
    "full": {"n_train": 5000, "epochs": 6, "curve_n": 400, "pgd_steps": 5},
    "quick": {"n_train": 1000, "epochs": 3, "curve_n": 200, "pgd_steps": 5},
}
MODEL = ("maxout", {"hidden": [240, 240], "pieces": 5})
PUBLISHED = {"clean_trained_fgsm_error": 0.894, "adv_trained_fgsm_error": 0.179,
             "clean_trained_clean_error": 0.0094, "adv_trained_clean_error": 0.0084}


def _train_with_curves(ctx: LectureContext, label: str, objective: Any,
                       recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """Train (or read back from the cache) one run; returns its per-epoch history dicts."""
    train = ctx.train.subset(limit=min(len(ctx.train), recipe["n_train"]))
    n_test = min(len(ctx.test), recipe["curve_n"])
    test = ctx.test.subset(limit=n_test)
    x = train.images.float() / 255
    arch, extra = MODEL
    settings = dict(extra, in_shape=list(train.shape), num_classes=train.num_classes,
                    mean=x.mean(dim=(0, 2, 3)).tolist(),
                    std=x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())
    cfg = TrainConfig(epochs=recipe["epochs"], batch_size=100, lr=2e-3, seed=ctx.seed)
    curves = CurveConfig(eps=EPS, pgd_steps=recipe["pgd_steps"], n=None, seed=ctx.seed)
    desc = objective.settings() if objective is not None else {"defense": "none"}
    key_src = json.dumps({"arch": arch, "settings": settings, "cfg": cfg.__dict__, "obj": desc,
                          "curves": curves.__dict__, "data": [train.name, len(train), n_test],
                          "v": __version__}, sort_keys=True, default=str)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    ckpt = ctx.cache_dir / f"{train.name}-advcurves-{label}-{key}"
    if (ckpt / META_FILE).is_file():
        try:
            meta = read_metadata(ckpt)
            if meta.get("epochs_done") == cfg.epochs:
                ctx.progress(f"using cached {label} learning curves ({ckpt})")
                return list(meta["history"])
        except ValueError as e:  # corrupt cache entry: retrain
            log.warning("ignoring cached run at %s: %s", ckpt, e)
    ctx.progress(f"training {label} {arch} on {len(train)} {train.name} images "
                 f"({cfg.epochs} epochs, curves on {n_test} test images)")
    torch.manual_seed(ctx.seed)
    model = create_model(arch, **settings)
    resume = (ckpt / "train_state.safetensors").is_file()
    res = fit(model, train.images, train.labels, cfg, objective=objective,
              test=(test.images, test.labels), curves=curves, checkpoint_dir=ckpt, resume=resume,
              meta={"dataset": train.name, "seed": ctx.seed, "lecture": "adv_training"})
    return [h.__dict__ for h in res.history]


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
    recipe = RECIPE["quick" if ctx.quick else "full"]
    runs = {"clean": _train_with_curves(ctx, "clean", None, recipe),
            "adversarial": _train_with_curves(ctx, "adversarial",
                                              FGSMTraining(eps=EPS, alpha=0.5), recipe)}
    final = {label: hist[-1]["extra"] for label, hist in runs.items()}
    passes = {label: sum(h["passes"] for h in hist) for label, hist in runs.items()}
    table = [{"epoch": a["epoch"], "clean": a["extra"], "adversarial": b["extra"]}
             for a, b in zip(runs["clean"], runs["adversarial"], strict=True)]
    data = {"eps": EPS, "recipe": recipe, "model": f"{MODEL[0]} {MODEL[1]}", "final": final,
            "passes": passes, "table": table, "published": PUBLISHED,
            "dataset": ctx.train.name}
    fig = learning_curves_figure(runs, EPS)
    return Section("adv_training", "", data=data,
                   figures={"curves": figures.figure_to_data_uri(fig)})
