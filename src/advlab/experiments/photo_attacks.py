"""The lecture's photo slides, for real: the panda, the 8-bit claim, attacks on photographs.

All experiments read :meth:`~advlab.experiments.ExperimentContext.photos` (EfficientNet-Lite0
and the 20 foolbox ImageNet photos, or a test stand-in) and count forward+backward passes,
because on this CPU one pass of EfficientNet over the 20 photos costs 1-3 s.

* :func:`run_panda` (``advlab analyze panda``): one correctly classified photo under FGSM,
  PGD and a targeted PGD towards "gibbon" (class 368), with top-1 names and confidences; and
  the 8-bit claim measured: PGD at eps = 0.49/255 changes no pixel's 8-bit value (the
  adversarial image rounds to exactly the clean one), yet flips the float prediction.
* :func:`run_photo_attacks` (``advlab analyze photo-attacks``): FGSM and PGD success and mean
  wrong-class confidence on the photos at eps in {0.5, 1, 2, 4, 8}/255.

References:
    Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR
    2015 (the panda, eps = 0.007, GoogLeNet); Madry et al., "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018 (PGD); Kurakin, Goodfellow & Bengio,
    "Adversarial examples in the physical world", 2016 (FGSM on ImageNet Inception v3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from advlab.attacks import FGSM, PGD
from advlab.criteria import Misclassification, TargetedMisclassification
from advlab.experiments.analysis import AnalysisRun, register_analysis
from advlab.experiments.context import ExperimentContext
from advlab.threat import ThreatModel

__all__ = ["PandaRun", "PhotoAttacksRun", "ClassDirectionRun", "run_panda", "run_photo_attacks",
           "run_class_direction", "class_weight_direction", "rounds_to_clean", "GIBBON", "DAISY",
           "PHOTO_EPS"]

#: ImageNet class 368, the panda slide's target
GIBBON = 368
#: ImageNet class 985, the goldfish slide's target
DAISY = 985
#: the sweep of :func:`run_photo_attacks`, in 8-bit levels
PHOTO_EPS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: the published panda: Goodfellow et al. 2014, GoogLeNet, eps 0.007 (about 1.8/255)
PUBLISHED_PANDA = {"eps": 0.007, "clean_class": "giant panda", "clean_conf": 0.577,
                   "adv_class": "gibbon", "adv_conf": 0.993}


def rounds_to_clean(x_adv: torch.Tensor, clean_uint8: torch.Tensor) -> torch.Tensor:
    """Per image: does ``x_adv`` (floats in [0, 1]) round to exactly ``clean_uint8``'s 8 bits?"""
    q = torch.round(x_adv * 255).clamp(0, 255).to(torch.uint8)
    return (q == clean_uint8).flatten(1).all(dim=1)


def _top(logits: torch.Tensor, classes: tuple[str, ...]) -> list[dict[str, Any]]:
    p = F.softmax(logits, dim=1)
    conf, idx = p.max(1)
    return [{"class": classes[int(i)], "label": int(i), "confidence": float(c)}
            for c, i in zip(conf, idx, strict=True)]


@dataclass
class PandaRun(AnalysisRun):
    """Numbers in :attr:`data`; images for the figure."""

    clean: torch.Tensor
    adversarial: dict[str, torch.Tensor]
    titles: dict[str, str]
    bit_example: torch.Tensor | None
    bit_clean: torch.Tensor | None


def run_panda(ctx: ExperimentContext, eps: float | None = None, target: int | None = None) -> PandaRun:
    """The panda slide on a real photo (see the module docstring).

    Args:
        ctx: the lecture context; its :meth:`photos` supplies model and photos.
        eps: the FGSM/PGD budget in [0, 1] units (default 1/255).
        target: the targeted attack's class (default "gibbon", 368, when the model has 1000
            classes, else the last class).

    Raises:
        PhotosUnavailable: the ``imagenet`` extra is not installed.
    """
    ps = ctx.photos()
    model, classes = ps.model, ps.classes
    x, y = ps.tensors()
    eps = float(eps if eps is not None else 1 / 255)
    steps = 5 if ctx.quick else 10
    with torch.no_grad():
        clean_logits = model(x)
    passes = 0  # forward+backward passes over single photos (the clean forward is not counted)
    pred = clean_logits.argmax(1)
    correct = (pred == y).nonzero().flatten()
    if correct.numel() == 0:
        raise ValueError("the model classifies none of the photos correctly; nothing to attack")
    conf = F.softmax(clean_logits, 1).max(1).values
    i = int(correct[conf[correct].argmax()])  # the most confident correct photo
    xi, yi = x[i:i + 1], y[i:i + 1]
    threat = ThreatModel("linf", eps)
    gen = ctx.generator()
    target = int(target if target is not None else (GIBBON if clean_logits.shape[1] == 1000
                                                    else clean_logits.shape[1] - 1))
    runs = {
        "FGSM": FGSM()(model, xi, Misclassification(yi), threat=threat, generator=gen),
        f"PGD-{steps}": PGD(steps=steps, random_init=False)(model, xi, Misclassification(yi), threat=threat,
                                                           generator=gen),
    }
    t_eps = 2 * eps
    t_steps = 20 if ctx.quick else 40
    runs[f"targeted PGD-{t_steps}"] = PGD(steps=t_steps, random_init=False)(
        model, xi, TargetedMisclassification(torch.tensor([target])), threat=ThreatModel("linf", t_eps),
        generator=gen)
    clean_top = _top(clean_logits[i:i + 1], classes)[0]
    rows = []
    for name, r in runs.items():
        with torch.no_grad():
            lg = model(r.x_adv)
        top = _top(lg, classes)[0]
        p = F.softmax(lg, 1)[0]
        rows.append({"attack": name, "eps": t_eps if name.startswith("targeted") else eps,
                     "eps_255": round((t_eps if name.startswith("targeted") else eps) * 255, 3),
                     "success": bool(r.success[0]), "top": top,
                     "true_confidence": float(p[int(yi)]),
                     "target_confidence": float(p[target]) if name.startswith("targeted") else None,
                     "wrong_beats_clean": bool(top["label"] != int(yi) and top["confidence"]
                                               > clean_top["confidence"]),
                     "passes": int(r.passes.sum())})
        passes += int(r.passes.sum())
    # the 8-bit claim: every correctly classified photo, PGD at just under half a level
    bit_eps = 0.49 / 255
    bit = PGD(steps=steps, random_init=False, early_stop=True)(
        model, x[correct], Misclassification(y[correct]), threat=ThreatModel("linf", bit_eps), generator=gen)
    same_bits = rounds_to_clean(bit.x_adv, ps.photos.images[correct])
    flipped = bit.success & same_bits
    passes += int(bit.passes.sum())
    k = int(flipped.nonzero().flatten()[0]) if bool(flipped.any()) else None
    data = {"photo": i, "true": classes[int(yi)], "clean": clean_top, "target": classes[target],
            "rows": rows, "published": PUBLISHED_PANDA, "model": ps.model_name,
            "eight_bit": {"eps_255": 0.49, "steps": steps, "n_correct": int(correct.numel()),
                          "n_photos": len(x), "flipped": int(flipped.sum()),
                          "rounds_to_clean": int(same_bits.sum()),
                          "example": None if k is None else {
                              "photo": int(correct[k]), "true": classes[int(y[correct][k])],
                              "adv": _top(bit.logits[k:k + 1], classes)[0]}},
            "passes": int(passes)}
    titles = {name: f"{name}: {row['top']['class']} {row['top']['confidence']:.1%}"
              for name, row in zip(runs, rows, strict=True)}
    return PandaRun(data, xi[0], {n: r.x_adv[0] for n, r in runs.items()}, titles,
                    None if k is None else bit.x_adv[k], None if k is None else x[correct][k])


@dataclass
class PhotoAttacksRun(AnalysisRun):
    """Numbers in :attr:`data` (success and wrong-class confidence per attack and eps)."""


def run_photo_attacks(ctx: ExperimentContext, steps: int | None = None) -> PhotoAttacksRun:
    """FGSM and PGD on every photo at eps in :data:`PHOTO_EPS` levels of 1/255.

    FGSM takes one gradient for all budgets; PGD stops per photo once it is fooled.
    Success is counted on the photos the model classifies correctly.
    """
    ps = ctx.photos()
    model = ps.model
    x, y = ps.tensors()
    steps = steps or (3 if ctx.quick else 5)
    with torch.no_grad():
        pred = model(x).argmax(1)
    keep = (pred == y).nonzero().flatten()
    xs, ys = x[keep], y[keep]
    gen = ctx.generator()
    rows = []
    # FGSM: one cross-entropy gradient at the clean photos serves every budget
    xg = xs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(F.cross_entropy(model(xg), ys, reduction="sum"), xg)
    sign = g.sign()
    passes = len(xs)
    for e in PHOTO_EPS:
        with torch.no_grad():
            fl = model((xs + e / 255 * sign).clamp(0, 1))
        fooled = fl.argmax(1) != ys
        p = F.softmax(fl, 1).max(1).values
        rows.append({"attack": "FGSM", "eps_255": e, "success": float(fooled.float().mean()),
                     "wrong_confidence": float(p[fooled].mean()) if bool(fooled.any()) else None,
                     "passes": len(xs) if e == PHOTO_EPS[0] else 0})
        r = PGD(steps=steps, random_init=False, early_stop=True)(
            model, xs, Misclassification(ys), threat=ThreatModel("linf", e / 255), generator=gen)
        p = F.softmax(r.logits, 1).max(1).values
        passes += int(r.passes.sum())
        rows.append({"attack": f"PGD-{steps}", "eps_255": e, "success": float(r.success.float().mean()),
                     "wrong_confidence": float(p[r.success].mean()) if bool(r.success.any()) else None,
                     "passes": int(r.passes.sum())})
    data = {"n_photos": len(x), "n_correct": int(keep.numel()), "rows": rows, "passes": passes,
            "model": ps.model_name, "published": {
                "panda": PUBLISHED_PANDA,
                "note": "Kurakin et al. 2016 (Inception v3, 50,000 ImageNet validation images): "
                        "FGSM leaves top-1 accuracy far below clean already at eps 2/255 to 8/255 "
                        "(their Figure 2; not re-read here, so no exact value is quoted)"}}
    return PhotoAttacksRun(data)


def class_weight_direction(model: torch.nn.Module, x: torch.Tensor, source: int, target: int,
                           eps: float) -> torch.Tensor:
    """``eps * sign(grad_x (z_target - z_source))`` at ``x`` (one image ``(1, C, H, W)``).

    For a linear model ``z = W x + b`` this is ``eps * sign(w_target - w_source)``: adding the
    target class's weights (the lecture's goldfish-to-daisy slide); for a deep net it is
    those last-layer weights back-propagated to the input.
    """
    xg = x.detach().clone().requires_grad_(True)
    z = model(xg)
    (grad,) = torch.autograd.grad(z[0, target] - z[0, source], xg)
    return eps * grad.sign()


@dataclass
class ClassDirectionRun(AnalysisRun):
    """Numbers in :attr:`data`."""


def run_class_direction(ctx: ExperimentContext, eps: float | None = None,
                        target: int | None = None) -> ClassDirectionRun:
    """One photo's perturbation towards one class, added to every other photo.

    Two perturbations are built on the source photo (the most confidently, correctly
    classified one): a targeted PGD towards ``target`` and the class-weight direction
    (:func:`class_weight_direction`). Each is added unchanged to the other photos; the result
    counts how many become ``target`` and how many change prediction at all.

    Args:
        ctx: the lecture context.
        eps: max-norm budget (default 8/255).
        target: the class (default "daisy", 985, for a 1000-class model, else the last class).
    """
    ps = ctx.photos()
    model, classes = ps.model, ps.classes
    x, y = ps.tensors()
    eps = float(eps if eps is not None else 8 / 255)
    with torch.no_grad():
        logits = model(x)
    pred = logits.argmax(1)
    k = logits.shape[1]
    target = int(target if target is not None else (DAISY if k == 1000 else k - 1))
    correct = (pred == y).nonzero().flatten()
    if correct.numel() == 0:
        raise ValueError("the model classifies none of the photos correctly; nothing to attack")
    conf = F.softmax(logits, 1).max(1).values
    i = int(correct[conf[correct].argmax()])
    others = torch.tensor([j for j in range(len(x)) if j != i and int(pred[j]) != target])
    steps = 10 if ctx.quick else 20
    r = PGD(steps=steps, random_init=False)(model, x[i:i + 1],
                                            TargetedMisclassification(torch.tensor([target])),
                                            threat=ThreatModel("linf", eps), generator=ctx.generator())
    deltas = {f"targeted PGD-{steps} on the source": (r.x_adv - x[i:i + 1]).detach(),
              "class-weight direction": class_weight_direction(model, x[i:i + 1], int(y[i]), target, eps)}
    rows = []
    for name, d in deltas.items():
        with torch.no_grad():
            on_source = int(model((x[i:i + 1] + d).clamp(0, 1)).argmax(1))
            moved = model((x[others] + d).clamp(0, 1)).argmax(1)
        rows.append({"perturbation": name, "source_becomes": classes[on_source],
                     "to_target": float((moved == target).float().mean()),
                     "changed": float((moved != pred[others]).float().mean()), "n_others": len(others)})
    data = {"source": classes[int(y[i])], "photo": i, "target": classes[target],
            "eps_255": round(eps * 255, 3),
            "rows": rows, "model": ps.model_name, "passes": int(r.passes.sum()) + 1}
    return ClassDirectionRun(data)


register_analysis("panda", run_panda, "photo_panda")
register_analysis("class-direction", run_class_direction, "photo_class_direction")
register_analysis("photo-attacks", run_photo_attacks, "photo_attacks")
