"""Detectors of adversarial examples and the adaptive attack that bypasses them (analyze detectors).

Two detectors on the lecture's CNN, trained on clean vs PGD training images: a detection head
on a hidden layer (Metzen et al. 2017) and the CNN retrained with an extra "adversarial"
class (Grosse et al. 2017). Each is set to a 5% false-positive rate on clean test images and
measured on (1) the PGD it was trained on, (2) the adaptive attack of Carlini & Wagner (2017),
PGD on classifier and detector together (:func:`advlab.defenses.detectors.adaptive_pgd`), and
(3) a few rounds of retraining on the adaptive examples and attacking again: the detection rate
of each round's fresh attack, before and after retraining, is the "non-stationary" curve.

References:
    Metzen, Genewein, Fischer & Bischoff, "On Detecting Adversarial Perturbations", ICLR 2017;
    Grosse, Manoharan, Papernot, Backes & McDaniel, "On the (Statistical) Detection of
    Adversarial Examples", 2017; Carlini & Wagner, "Adversarial Examples Are Not Easily
    Detected: Bypassing Ten Detection Methods", AISec 2017.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from advlab.attacks.pgd import PGD
from advlab.defenses.detectors import (
    AdaptiveResult,
    Detector,
    adaptive_pgd,
    detection_rate,
    fit_detector,
    threshold_at_fpr,
    train_extra_class_detector,
    train_feature_detector,
)
from advlab.experiments.analysis import AnalysisRun, register_analysis
from advlab.experiments.context import ExperimentContext
from advlab.threat import ThreatModel

__all__ = ["DetectorsRun", "run_detectors", "evaluate_detector", "FPR"]

#: the false-positive rate on clean test images at which every detector is operated
FPR = 0.05


@dataclass
class DetectorsRun(AnalysisRun):
    """Numbers in :attr:`data`; a few clean / PGD / adaptive images for the figure."""

    clean: torch.Tensor
    pgd: torch.Tensor
    adaptive: torch.Tensor


def _r(v: float) -> float | None:
    return None if v != v else round(float(v), 4)


def _dist(x: torch.Tensor, xa: torch.Tensor) -> dict[str, float | None]:
    d = (xa - x).flatten(1)
    return {"l2": _r(float(d.norm(dim=1).mean())), "linf": _r(float(d.abs().amax(1).mean()))}


def evaluate_detector(det: Detector, x_clean: torch.Tensor, pgd_adv: torch.Tensor,
                      fooled: torch.Tensor, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                      *, steps: int, generator: torch.Generator) -> tuple[dict[str, Any], AdaptiveResult]:
    """Threshold at :data:`FPR` on ``x_clean``; detection of the PGD and of the adaptive attack on ``x``.

    Detection rates count the adversarial examples that fool the classifier (``fooled`` for PGD).
    """
    thr = threshold_at_fpr(det, x_clean, FPR)
    res = adaptive_pgd(det, x, y, threat, threshold=thr, steps=steps, generator=generator)
    row = {"threshold": _r(thr), "fpr": FPR,
           "pgd_fooled": _r(float(fooled.float().mean())),
           "pgd_detection": _r(detection_rate(det, pgd_adv[fooled], thr)),
           "adaptive_fooled": _r(float(res.fooled.float().mean())),
           "adaptive_detection": _r(detection_rate(det, res.x_adv[res.fooled], thr)),
           "adaptive_success": _r(float(res.success.float().mean())),
           "pgd_distortion": _dist(x, pgd_adv), "adaptive_distortion": _dist(x, res.x_adv)}
    return row, res


def run_detectors(ctx: ExperimentContext, n: int | None = None, eps: float | None = None,
                  rounds: int | None = None) -> DetectorsRun:
    """Train both detectors on PGD, attack them adaptively, retrain for ``rounds`` rounds.

    Args:
        ctx: the lecture context (the classifier is its cached ``"cnn"``).
        n: attacked test images (default 50 quick, 150 full); twice as many training images
            and as many clean calibration images (the 5% threshold) are drawn besides.
        eps: the max-norm budget of PGD and of the adaptive attack (default 0.3).
        rounds: rounds of retraining on the adaptive examples (default 2 quick, 3 full).
    """
    t0 = time.perf_counter()
    n = n or (50 if ctx.quick else 150)
    rounds = rounds or (2 if ctx.quick else 3)
    eps = float(eps or 0.3)
    steps = 10 if ctx.quick else 20
    threat = ThreatModel("linf", eps)
    model = ctx.model("cnn").eval()
    k = len(ctx.test.classes)
    xtr, ytr = ctx.train.subset(limit=2 * n).tensors()
    xte, yte = ctx.eval_data(2 * n)
    x_cal, (x, y) = xte[:n], (xte[n:], yte[n:])
    gen = ctx.generator
    pgd = PGD(steps=steps)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    x, y = x[ok], y[ok]
    ctx.progress("detectors: PGD on the training images")
    adv_tr = pgd(model, xtr, ytr, threat=threat, generator=gen()).x_adv
    pgd_res = pgd(model, x, y, threat=threat, generator=gen())
    layer = "features" if "features" in dict(model.named_modules()) else list(dict(model.named_modules()))[-2]
    detectors: dict[str, Detector] = {
        "feature head (Metzen et al.)": train_feature_detector(model, xtr, ytr, adv_tr, layer,
                                                               generator=gen()),
        "extra class (Grosse et al.)": train_extra_class_detector(model, xtr, ytr, adv_tr, k,
                                                                  generator=gen()),
    }
    rows, curves, first_adaptive = [], {}, None
    for name, det in detectors.items():
        ctx.progress(f"detectors: {name}")
        row, prev = evaluate_detector(det, x_cal, pgd_res.x_adv, pgd_res.success, x, y, threat,
                                      steps=steps, generator=gen())
        if first_adaptive is None:
            first_adaptive = prev.x_adv
        rows.append({"detector": name, **row})
        # the arms race: retrain on adaptive examples of the training images, attack the new detector
        curve = [{"round": 0, "previous_attack": None, "fresh_attack": row["adaptive_detection"]}]
        pool = adv_tr
        for r in range(1, rounds + 1):
            thr = threshold_at_fpr(det, x_cal, FPR)
            pool = torch.cat([pool, adaptive_pgd(det, xtr, ytr, threat, threshold=thr, steps=steps,
                                                 generator=gen()).x_adv])
            reps = len(pool) // len(xtr)
            fit_detector(det, xtr.repeat(reps, 1, 1, 1), ytr.repeat(reps), pool, epochs=2, generator=gen())
            thr = threshold_at_fpr(det, x_cal, FPR)
            fresh = adaptive_pgd(det, x, y, threat, threshold=thr, steps=steps, generator=gen())
            curve.append({"round": r,
                          "previous_attack": _r(detection_rate(det, prev.x_adv[prev.fooled], thr)),
                          "fresh_attack": _r(detection_rate(det, fresh.x_adv[fresh.fooled], thr)),
                          "fresh_fooled": _r(float(fresh.fooled.float().mean())),
                          "fresh_distortion": _dist(x, fresh.x_adv)})
            prev = fresh
        curves[name] = curve
    data = {"eps": eps, "steps": steps, "n_attacked": int(len(x)), "n_train": int(len(xtr)),
            "n_calibration": int(len(x_cal)), "fpr": FPR, "layer": layer, "rounds": rounds,
            "rows": rows, "curves": curves, "seconds": round(time.perf_counter() - t0, 1),
            "published": {"source": "Carlini & Wagner 2017 (approximate, not verified here)",
                          "claim": "all ten detectors bypassed; on MNIST the adaptive attack needs "
                                   "a mean L2 distortion only modestly larger than the undefended model's"}}
    m = min(6, len(x))
    assert first_adaptive is not None
    return DetectorsRun(data, x[:m], pgd_res.x_adv[:m], first_adaptive[:m])


register_analysis("detectors", run_detectors, "detectors")
