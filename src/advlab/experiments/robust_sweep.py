"""Class sweeps on an undefended and an adversarially trained CNN, judged by a third model.

The lecture shows a CIFAR-10 truck optimised towards every class after adversarial training:
the images still do not become those classes (only "bird" came near). Tsipras et al. (2019)
later found that robust models' input gradients look like the class. This experiment sweeps
test images through all classes with a large-budget targeted BIM on the lecture's undefended
CNN and on its FGSM-RS adversarially trained CNN, then asks a separately trained CNN (which
was never attacked) what the swept images are: the share it also calls the target class
measures how class-like the images became.

References:
    Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", 2015;
    Tsipras, Santurkar, Engstrom, Turner & Madry, "Robustness May Be at Odds with Accuracy",
    ICLR 2019; Wong, Rice & Kolter, "Fast is better than free", ICLR 2020 (FGSM-RS training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advlab import analysis as an
from advlab.analysis.class_sweep import ClassSweep
from advlab.evaluation import predict
from advlab.experiments.analysis import AnalysisRun, register_analysis
from advlab.experiments.context import ExperimentContext

__all__ = ["RobustSweepRun", "run_robust_class_sweep", "sweep_agreement"]

#: the swept models (lecture recipe -> report name) and the independent judge
SWEPT = {"cnn": "undefended CNN", "cnn_fgsmrs": "FGSM-RS adversarially trained CNN"}
JUDGE = "analysis_cnn_b"


@dataclass
class RobustSweepRun(AnalysisRun):
    """Numbers in :attr:`data`; the first source image's sweep per model for the figure."""

    sweeps: dict[str, ClassSweep]
    judge_labels: dict[str, torch.Tensor]
    classes: tuple[str, ...]


def sweep_agreement(sweeps: list[ClassSweep], judge: torch.nn.Module) -> dict[str, float]:
    """How class-like swept images are, by a model that was not attacked.

    Args:
        sweeps: class sweeps of several source images (targets other than the source count).
        judge: an independently trained classifier.

    Returns:
        ``reached`` (share of targets the attacked model reached), ``judge_agrees`` (share of
        the reached images the judge also calls the target), ``judge_keeps_source`` (share the
        judge still calls the source class).
    """
    reached = agree = keep = total = 0
    for sw in sweeps:
        other = sw.targets != sw.label
        hit = sw.success & other
        total += int(other.sum())
        reached += int(hit.sum())
        if hit.any():
            pred = predict(judge, sw.images[hit]).argmax(1)
            agree += int((pred == sw.targets[hit]).sum())
            keep += int((pred == sw.label).sum())
    return {"reached": reached / max(total, 1), "judge_agrees": agree / max(reached, 1),
            "judge_keeps_source": keep / max(reached, 1), "n_targets": total, "n_reached": reached}


def run_robust_class_sweep(ctx: ExperimentContext, n: int | None = None,
                           eps: float | None = None) -> RobustSweepRun:
    """Sweep ``n`` test images (one per class first) through every class on both CNNs.

    Args:
        ctx: the lecture context (models are its cached recipes).
        n: source images (default 5 quick, 10 full).
        eps: the targeted BIM's max-norm budget (default 0.5: large, so that the robust
            model can be pushed into every class at all).
    """
    n = n or (5 if ctx.quick else 10)
    eps = float(eps or 0.5)
    steps = 20 if ctx.quick else 40
    x, y = ctx.eval_data(500)
    order: list[int] = []
    for c in range(len(ctx.test.classes)):  # one source per class, in class order
        hits = (y == c).nonzero().flatten()
        if hits.numel():
            order.append(int(hits[0]))
    order = order[:n]
    judge = ctx.model(JUDGE)
    rows, first, judged = [], {}, {}
    for key, name in SWEPT.items():
        model = ctx.model(key)
        sweeps = [an.class_sweep(model, x[i], int(y[i]), eps_grid=(eps,), steps=steps,
                                 generator=ctx.generator()) for i in order]
        stats = sweep_agreement(sweeps, judge)
        clean_acc = float((predict(model, x).argmax(1) == y).float().mean())
        rows.append({"model": name, "recipe": key, "clean_acc": clean_acc,
                     **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()},
                     "mean_target_confidence": round(float(torch.cat(
                         [s.target_confidence[s.targets != s.label] for s in sweeps]).mean()), 4)})
        first[name] = sweeps[0]
        judged[name] = predict(judge, sweeps[0].images).argmax(1)
    data = {"eps": eps, "steps": steps, "n_sources": len(order), "judge": "a separately trained CNN "
            "(lecture recipe analysis_cnn_b, never attacked)", "rows": rows,
            "source": ctx.test.classes[int(y[order[0]])], "classes": list(ctx.test.classes)}
    return RobustSweepRun(data, first, judged, tuple(ctx.test.classes))


register_analysis("robust-class-sweep", run_robust_class_sweep, "robust_class_sweep")
