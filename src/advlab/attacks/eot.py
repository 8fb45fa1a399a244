"""Expectation over transformation (EOT, Athalye et al. 2018).

:class:`EOT` is PGD on the expected loss over a distribution of
transformations, so the adversarial example survives them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, store_settings
from advlab.attacks.engine import (
    Evaluation,
    SteepestAscent,
    Tracker,
    default_step_size,
    iterate,
    random_start,
)
from advlab.criteria import Criterion
from advlab.losses import LOSSES, cw_margin
from advlab.threat import ThreatModel
from advlab.transforms import Transform, print_and_photograph

__all__ = ["EOT"]


class EOT(Attack):
    """Expectation over transformation (Athalye et al. 2018) with PGD steps.

    Each step ascends ``E_t[loss(model(t(x)))]`` estimated with ``samples``
    transformations drawn from ``transform`` (with the attack's generator),
    then projects onto the threat model. The transforms act on ``[0, 1]``
    images: inputs are rescaled from the threat model's bounds first.
    Non-differentiable transforms (JPEG, quantization) contribute a
    straight-through (BPDA) gradient.

    The returned point per sample is the iterate at which the largest share of
    the ``samples`` transformed copies satisfied the criterion (ties: highest
    mean objective); with ``select="digital_first"`` iterates that also fool
    the model untransformed rank above those that do not (an adversarial
    example is wanted both on screen and after printing).
    ``info["expected_success"]`` is that share. ``success`` is the criterion
    on the untransformed ``x_adv`` (the digital result), like every other
    attack. ``passes`` counts forward+backward passes of single images, i.e.
    ``samples`` per step.

    Objective options: ``loss="cw"`` with a finite ``kappa`` maximises the
    Carlini-Wagner margin clipped at ``kappa`` per transformed copy, so the
    average stops rewarding copies that are already misclassified by a margin
    of ``kappa`` and the gradient goes to the copies that still resist
    (Carlini & Wagner 2017, the confidence of their loss ``f6``).
    ``average="logits"`` takes the loss of the mean logits over the sampled
    transformations instead of the mean of the per-copy losses.
    ``schedule="cosine"`` anneals the step from ``step_size`` to 0.

    Args:
        transform: the distribution of transformations; default
            :func:`~advlab.transforms.print_and_photograph`.
        samples: transformations per gradient estimate (``>= 1``).
        steps: gradient steps (``>= 1``).
        step_size: absolute step; default ``rel_step_size * eps``.
        rel_step_size: step relative to eps; default ``2.5 / steps``.
        random_init: start from a uniform point in the ball.
        loss: ``"ce" | "cw" | "dlr"``.
        kappa: clip of the CW margin (only with ``loss="cw"``); ``inf`` keeps
            the plain margin.
        average: ``"loss"`` (mean of per-copy losses, Athalye et al.) or
            ``"logits"`` (loss of the mean logits).
        schedule: ``"constant"`` or ``"cosine"`` step size.
        select: ``"expected"`` (largest share of fooled transformed copies)
            or ``"digital_first"`` (untransformed success first, then share).

    References:
        Athalye, Engstrom, Ilyas & Kwok, "Synthesizing Robust Adversarial
        Examples", ICML 2018 (arXiv:1707.07397, 2017).
        Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of
        Security", ICML 2018 (BPDA for the non-differentiable transforms).
        Carlini & Wagner, "Towards Evaluating the Robustness of Neural
        Networks", IEEE S&P 2017 (the margin loss with confidence ``kappa``).
    """

    AVERAGES = ("loss", "logits")
    SCHEDULES = ("constant", "cosine")
    SELECTS = ("expected", "digital_first")

    def __init__(self, transform: Transform | None = None, samples: int = 8, steps: int = 20,
                 step_size: float | None = None, rel_step_size: float | None = None,
                 random_init: bool = False, loss: str = "ce", kappa: float = float("inf"),
                 average: str = "loss", schedule: str = "constant", select: str = "expected") -> None:
        store_settings(self, locals())

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        t = self.transform if self.transform is not None else print_and_photograph()
        out["transform"] = t.settings()
        return out

    def _check(self) -> Transform:
        for name in ("samples", "steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.step_size is not None and self.step_size < 0:
            raise ValueError(f"step_size must be >= 0, got {self.step_size}")
        if self.rel_step_size is not None and self.rel_step_size < 0:
            raise ValueError(f"rel_step_size must be >= 0, got {self.rel_step_size}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; use one of {sorted(LOSSES)}")
        if isinstance(self.kappa, bool) or not isinstance(self.kappa, (int, float)) or not self.kappa > 0:
            raise ValueError(f"kappa must be a number > 0 (inf: no clipping), got {self.kappa!r}")
        if self.kappa != float("inf") and self.loss != "cw":
            raise ValueError(f"kappa applies to loss='cw' only, got loss={self.loss!r}")
        for name, allowed in (("average", self.AVERAGES), ("schedule", self.SCHEDULES),
                              ("select", self.SELECTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; use one of {list(allowed)}")
        t = self.transform if self.transform is not None else print_and_photograph()
        if not isinstance(t, Transform):
            raise TypeError(f"transform must be an advlab.physical Transform, got {type(t).__name__}")
        return t

    def _check_settings(self) -> None:
        self._check()

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        transform = self._check()
        if x.ndim != 4:
            raise ValueError(f"EOT needs image batches (N, C, H, W), got shape {tuple(x.shape)}")
        eps = threat.eps
        alpha = default_step_size(eps, self.steps, self.step_size, self.rel_step_size)
        schedule = None
        if self.schedule == "cosine":
            def schedule(t: int) -> float:
                return alpha * 0.5 * (1.0 + math.cos(math.pi * t / self.steps))
        objective = _ExpectedObjective(self, transform, criterion, threat, generator)
        tracker = Tracker(x, objective.initial_keys(x.shape[0], x))
        random = self.random_init and eps > 0
        start = random_start(x, threat, generator) if random else x.clone()
        iterate(model, x, objective, threat, SteepestAscent(alpha, schedule), tracker,
                evaluations=self.steps, start=start, record_start=random)
        tracker.forwards += objective.digital_forwards
        best_x = x.clone() if eps == 0 else tracker.x
        with torch.no_grad():
            logits = model(best_x)
        tracker.forwards += 1
        share = tracker.keys[-2]
        return AttackResult(x_adv=best_x, success=criterion.is_success(logits), logits=logits,
                            distance=threat.strategy.distance(best_x, x), passes=tracker.passes,
                            forwards=tracker.forwards,
                            info={"step_size": alpha, "expected_success": share.clamp_min(0)})


class _ExpectedObjective:
    """EOT's objective: the loss averaged over ``samples`` transformed copies of each iterate.

    Ranking keys: (untransformed success, for ``select="digital_first"``), the share
    of transformed copies satisfying the criterion, the mean objective.
    """

    def __init__(self, attack: EOT, transform: Transform, criterion: Criterion,
                 threat: ThreatModel, generator: torch.Generator | None) -> None:
        self.attack = attack
        self.transform = transform
        self.criterion = criterion
        self.threat = threat
        self.generator = generator
        self.cost = attack.samples
        n = criterion.classes.shape[0]
        self.crit_rep = criterion[torch.arange(n, device=criterion.classes.device)
                                  .repeat_interleave(attack.samples)]
        self.digital_forwards = 0

    def _loss(self, logits: torch.Tensor, crit: Criterion) -> torch.Tensor:
        if self.attack.loss == "cw":
            return cw_margin(logits, crit.classes, crit.targeted, float(self.attack.kappa))
        return crit.loss(logits, self.attack.loss)

    def evaluate(self, model: nn.Module, xa: torch.Tensor, grad: bool) -> Evaluation:
        lo, hi = self.threat.bounds
        n, k = xa.shape[0], self.cost
        xg = xa.detach().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            rep = ((xg - lo) / (hi - lo)).repeat_interleave(k, dim=0)
            logits = model(self.transform(rep, self.generator) * (hi - lo) + lo)
            obj = self._loss(logits, self.crit_rep)
            if self.attack.average == "logits":
                target = self._loss(logits.view(n, k, -1).mean(1), self.criterion).sum()
            else:
                target = obj.sum() / k
            g = torch.autograd.grad(target, xg)[0] if grad else None
        share = self.crit_rep.is_success(logits.detach()).float().view(n, k).mean(1)
        mean_obj = obj.detach().view(n, k).mean(1)
        keys: tuple[torch.Tensor, ...] = (share, mean_obj)
        if self.attack.select == "digital_first":
            with torch.no_grad():
                digital = self.criterion.is_success(model(xa))
            self.digital_forwards += 1
            keys = (digital, *keys)
        return Evaluation(None, mean_obj, g, share >= 1, keys)

    def initial_keys(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        keys: tuple[torch.Tensor, ...] = (
            torch.full((n,), -1.0, dtype=like.dtype, device=like.device),
            torch.full((n,), float("-inf"), dtype=like.dtype, device=like.device))
        if self.attack.select == "digital_first":
            keys = (torch.zeros(n, dtype=torch.bool, device=like.device), *keys)
        return keys

    def subset(self, idx: torch.Tensor) -> _ExpectedObjective:
        raise NotImplementedError("EOT does not stop early per sample")
