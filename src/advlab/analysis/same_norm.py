"""Same L2 norm, different effect: why the max norm is the usual constraint.

Take a test digit (a 3), the nearest training example of another class (a 7)
and its L2 distance ``r``. Perturbations of exactly that L2 norm can turn the 3
into a 7 (the neighbour), leave it a 3 (random noise), just make it fainter
(erasing), or fool the model while the digit still looks like a 3 (a gradient
step). An L2 budget that allows the first cannot tell them apart; a small
max-norm budget rules out the visible changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advlab.analysis._common import check_generator, input_gradient, logits_of, probs
from advlab.validation import eval_mode

__all__ = ["SameNormResult", "same_norm_perturbations", "nearest_neighbour", "scale_to_norm"]

KINDS = ("nearest other-class training image", "random (Gaussian) direction",
         "erasing (fade towards black)", "adversarial (L2 gradient direction)")


@dataclass
class SameNormResult:
    """Four perturbations of one input with (nearly) the same L2 norm.

    Attributes:
        x: the clean input ``(C, H, W)``; label: its class.
        neighbour_index: index of the nearest training example of ``neighbour_class``.
        neighbour_class: the class of that neighbour.
        radius: ``||neighbour - x||_2``, the L2 norm every perturbation gets.
        kinds: names of the four perturbed inputs.
        images: the perturbed inputs ``(4, C, H, W)``, inside ``bounds``.
        l2, linf: per perturbed input, ``||image - x||`` in L2 and max norm.
        predictions, confidences: the model's class and its probability per image.
        clean_prediction, clean_confidence: the same for ``x``.
    """

    x: torch.Tensor
    label: int
    neighbour_index: int
    neighbour_class: int
    radius: float
    kinds: tuple[str, ...]
    images: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    predictions: torch.Tensor
    confidences: torch.Tensor
    clean_prediction: int
    clean_confidence: float

    def rows(self) -> list[dict[str, object]]:
        """One JSON-friendly row per perturbation."""
        return [{"kind": k, "l2": float(self.l2[i]), "linf": float(self.linf[i]),
                 "prediction": int(self.predictions[i]), "confidence": float(self.confidences[i])}
                for i, k in enumerate(self.kinds)]

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "neighbour_index": self.neighbour_index,
                "neighbour_class": self.neighbour_class, "radius": self.radius,
                "clean_prediction": self.clean_prediction,
                "clean_confidence": self.clean_confidence, "rows": self.rows()}


def nearest_neighbour(x: torch.Tensor, pool: torch.Tensor) -> tuple[int, float]:
    """Index in ``pool`` of the nearest example to ``x`` in L2, and the distance."""
    if pool.shape[0] == 0:
        raise ValueError("the pool of candidate neighbours is empty (no example of that class?)")
    d = (pool.flatten(1) - x.reshape(1, -1)).norm(dim=1)
    i = int(d.argmin())
    return i, float(d[i])


def scale_to_norm(x: torch.Tensor, direction: torch.Tensor, radius: float,
                  bounds: tuple[float, float] | None = (0.0, 1.0), iters: int = 60) -> torch.Tensor:
    """``clip(x + s * direction)`` with ``s >= 0`` chosen so the change has L2 norm ``radius``.

    Clipping can only shrink the change, so the norm is monotone in ``s`` and bisection
    finds ``s``; if even a huge step cannot reach ``radius`` the largest reachable change
    is returned.
    """
    def moved(s: float) -> torch.Tensor:
        y = x + s * direction
        return y.clamp(*bounds) if bounds is not None else y

    def norm(s: float) -> float:
        return float((moved(s) - x).norm())

    lo, hi = 0.0, radius / max(float(direction.norm()), 1e-30)
    while norm(hi) < radius and hi < 1e6:
        lo, hi = hi, hi * 2
    for _ in range(iters):
        mid = (lo + hi) / 2
        if norm(mid) < radius:
            lo = mid
        else:
            hi = mid
    return moved(hi)


def same_norm_perturbations(
    model: nn.Module,
    x: torch.Tensor,
    label: int,
    pool: torch.Tensor,
    *,
    neighbour_class: int | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> SameNormResult:
    """Nearest other-class example, random, erasing and adversarial changes of one L2 norm.

    Args:
        model: classifier returning logits.
        x: one input ``(C, H, W)`` in ``bounds`` (e.g. a test 3).
        label: its true class.
        pool: candidate neighbours ``(M, C, H, W)`` (e.g. the training 7s); the nearest
            one in L2 fixes the radius.
        neighbour_class: recorded class of ``pool`` (informational).
        bounds: valid input box; every perturbed input is clipped into it (the random and
            adversarial steps are rescaled by bisection so the clipped change keeps the
            radius). Erasing scales ``x`` towards 0; if the radius exceeds ``||x||`` it
            erases everything and its norm is ``||x||``.
        generator: for the random direction.

    Returns:
        :class:`SameNormResult`.

    References:
        Goodfellow, "Adversarial Examples and Adversarial Training", lecture (CS231n,
        2017): "same L2 norm" slide. Goodfellow, Shlens & Szegedy, ICLR 2015 (max-norm
        constraint).
    """
    check_generator(generator)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if pool.ndim != x.ndim + 1 or pool.shape[1:] != x.shape:
        raise ValueError(f"pool must have shape (M, {', '.join(map(str, x.shape))}), "
                         f"got {tuple(pool.shape)}")
    idx, radius = nearest_neighbour(x, pool)
    neighbour = pool[idx]
    g = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    random_img = scale_to_norm(x, g, radius, bounds)
    xn = float(x.norm())
    erased = x * max(0.0, 1 - radius / xn) if xn > 0 else x.clone()
    with eval_mode(model, "analysis"):
        y = torch.tensor([label])
        _, grad = input_gradient(model, x[None], lambda z: F.cross_entropy(z, y, reduction="none"))
        adv = scale_to_norm(x, grad[0], radius, bounds)
        imgs = torch.stack([neighbour, random_img, erased, adv])
        logits = logits_of(model, torch.cat([imgs, x[None]]))
    p = probs(model, logits)
    pred = logits.argmax(1)
    conf = p.gather(1, pred[:, None]).squeeze(1)
    delta = (imgs - x[None]).flatten(1)
    return SameNormResult(
        x=x.clone(), label=int(label), neighbour_index=idx,
        neighbour_class=-1 if neighbour_class is None else int(neighbour_class), radius=radius,
        kinds=KINDS, images=imgs, l2=delta.norm(dim=1), linf=delta.abs().amax(dim=1),
        predictions=pred[:4], confidences=conf[:4], clean_prediction=int(pred[4]),
        clean_confidence=float(conf[4]))
