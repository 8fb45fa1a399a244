"""Sweeping one input through every class, and gradient ascent on log p(target).

Goodfellow, Shlens & Szegedy (2014) start from one digit and make it every other
class in turn: a shallow softmax model is fooled while the image still looks like
the original digit, while a shallow RBF network needs changes large enough that
the image visibly becomes the target class. Gradient ascent on
``log p(target | x)`` from a clean input shows the same as a film: the frames
barely change while the prediction switches (the lecture's ship-to-airplane).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from advlab.analysis._common import check_generator, input_gradient, log_probs, logits_of, probs
from advlab.attacks.pgd import BIM
from advlab.criteria import TargetedMisclassification
from advlab.threat import ThreatModel
from advlab.validation import check_inputs, eval_mode

__all__ = ["ClassSweep", "class_sweep", "GradientAscent", "gradient_ascent"]

DEFAULT_EPS_GRID = (0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


@dataclass
class ClassSweep:
    """The smallest max-norm change that makes one input each class.

    Attributes:
        x: the clean input ``(C, H, W)``; label: its true class.
        targets: the target classes ``(K,)``.
        eps_needed: per target, the smallest ``eps`` of the grid at which the targeted
            attack succeeded (``0`` for the true class if it is predicted, ``nan`` if none).
        images: per target, the adversarial input found (the clean input where none was).
        success: per target, whether the model predicts it at ``images``.
        target_confidence: per target, the model's probability of the target there.
        l2: per target, ``||image - x||_2``.
    """

    x: torch.Tensor
    label: int
    targets: torch.Tensor
    eps_needed: torch.Tensor
    images: torch.Tensor
    success: torch.Tensor
    target_confidence: torch.Tensor
    l2: torch.Tensor

    @property
    def mean_eps_needed(self) -> float:
        """Mean over the other classes reached (``nan`` if none)."""
        m = self.success & (self.targets != self.label)
        return float(self.eps_needed[m].mean()) if bool(m.any()) else math.nan

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "targets": self.targets.tolist(),
                "eps_needed": [None if math.isnan(float(e)) else float(e) for e in self.eps_needed],
                "success": self.success.tolist(),
                "target_confidence": [float(c) for c in self.target_confidence],
                "l2": [float(v) for v in self.l2], "mean_eps_needed": self.mean_eps_needed}


def class_sweep(
    model: nn.Module,
    x: torch.Tensor,
    label: int,
    *,
    targets: Sequence[int] | None = None,
    eps_grid: Sequence[float] = DEFAULT_EPS_GRID,
    steps: int = 20,
    bounds: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> ClassSweep:
    """Make ``x`` every class in turn with a targeted BIM attack of growing ``eps``.

    Args:
        model: classifier returning logits (softmax or log-odds outputs).
        x: one input ``(C, H, W)`` in ``bounds``; label: its class.
        targets: classes to reach (default: all).
        eps_grid: increasing max-norm budgets; each target gets the first that works.
        steps: BIM iterations per budget (step ``2.5 * eps / steps``, stopping per target
            once it is reached).
        bounds: valid input box.
        generator: passed to the attack (BIM itself is deterministic).

    Returns:
        :class:`ClassSweep`.

    References:
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
        ICLR 2015, figure 5 (softmax vs shallow RBF on one 9); Kurakin, Goodfellow &
        Bengio, "Adversarial examples in the physical world", 2016 (BIM).
    """
    check_generator(generator)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    grid = [float(e) for e in eps_grid]
    if not grid or any(b <= a for a, b in zip(grid, grid[1:], strict=False)) or grid[0] <= 0:
        raise ValueError("eps_grid must be a non-empty increasing list of positive budgets")
    with eval_mode(model, "analysis"):
        k = int(logits_of(model, x[None]).shape[1])
    tg = torch.arange(k) if targets is None else torch.as_tensor(list(targets), dtype=torch.long)
    if tg.numel() == 0 or int(tg.min()) < 0 or int(tg.max()) >= k:
        raise ValueError(f"targets must be classes in [0, {k - 1}]")
    xs = x[None].expand(tg.numel(), *x.shape).clone()
    check_inputs(model, xs, bounds)
    images = xs.clone()
    eps_needed = torch.full((tg.numel(),), math.nan)
    with eval_mode(model, "analysis"):
        done = logits_of(model, xs).argmax(1) == tg
    eps_needed[done] = 0.0
    attack = BIM(steps=steps, early_stop=True)
    for eps in grid:
        todo = (~done).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        r = attack(model, xs[todo], TargetedMisclassification(tg[todo]),
                   threat=ThreatModel("linf", eps, bounds), generator=generator)
        hit = todo[r.success]
        images[hit] = r.x_adv[r.success]
        eps_needed[hit] = eps
        done[hit] = True
    with eval_mode(model, "analysis"):
        logits = logits_of(model, images)
    p = probs(model, logits)
    return ClassSweep(x=x.clone(), label=int(label), targets=tg, eps_needed=eps_needed,
                      images=images, success=logits.argmax(1) == tg,
                      target_confidence=p.gather(1, tg[:, None]).squeeze(1),
                      l2=(images - xs).flatten(1).norm(dim=1))


@dataclass
class GradientAscent:
    """Frames of gradient ascent on ``log p(target | x)``.

    Attributes:
        target: the class; step_size: max-norm size of each signed step.
        steps_at: the iteration of every frame ``(F,)`` (frame 0 is the clean input).
        frames: the inputs ``(F, C, H, W)``.
        target_prob: ``p(target)`` at every frame; predictions: the predicted class.
        difference: last frame minus the clean input ``(C, H, W)``.
        first_success: first iteration where ``target`` is predicted (``-1``: never).
    """

    target: int
    step_size: float
    steps_at: torch.Tensor
    frames: torch.Tensor
    target_prob: torch.Tensor
    predictions: torch.Tensor
    difference: torch.Tensor
    first_success: int

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "step_size": self.step_size,
                "steps_at": self.steps_at.tolist(),
                "target_prob": [float(v) for v in self.target_prob],
                "predictions": self.predictions.tolist(), "first_success": self.first_success,
                "linf_change": float(self.difference.abs().max()),
                "l2_change": float(self.difference.norm())}


def gradient_ascent(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    *,
    step_size: float = 0.01,
    steps: int = 30,
    frames: int = 6,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> GradientAscent:
    """Signed gradient ascent on ``log p(target | x)`` from a clean input, keeping frames.

    Each step is ``x <- clip(x + step_size * sign(grad log p(target|x)))``; for log-odds
    models ``p`` is the per-class sigmoid.

    Args:
        model: classifier returning logits.
        x: one input ``(C, H, W)`` in ``bounds``.
        target: the class to climb towards.
        step_size: max-norm size of each step.
        steps: number of steps.
        frames: number of frames kept (evenly spaced, first and last included).
        bounds: valid input box.

    Returns:
        :class:`GradientAscent`.

    References:
        Goodfellow, Shlens & Szegedy, ICLR 2015; the lecture's ship-to-airplane sequence
        (Goodfellow, CS231n 2017).
    """
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if not isinstance(steps, int) or steps < 1 or frames < 2:
        raise ValueError("steps must be >= 1 and frames >= 2")
    check_inputs(model, x[None], bounds)
    keep = sorted({round(i * steps / (frames - 1)) for i in range(frames)})
    cur = x[None].clone()
    out, at, tp, pr = [], [], [], []
    first = -1
    tgt = torch.tensor([int(target)])
    with eval_mode(model, "analysis"):
        for it in range(steps + 1):
            logits, g = input_gradient(model, cur,
                                       lambda z: log_probs(model, z).gather(1, tgt[:, None]))
            pred = int(logits.argmax(1))
            if pred == target and first < 0:
                first = it
            if it in keep:
                out.append(cur[0].clone())
                at.append(it)
                tp.append(float(probs(model, logits)[0, target]))
                pr.append(pred)
            if it < steps:
                cur = (cur + step_size * g.sign()).clamp(*bounds)
    fr = torch.stack(out)
    return GradientAscent(target=int(target), step_size=float(step_size),
                          steps_at=torch.tensor(at), frames=fr, target_prob=torch.tensor(tp),
                          predictions=torch.tensor(pr), difference=fr[-1] - x,
                          first_success=first)
