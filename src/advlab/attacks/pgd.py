"""Projected gradient descent and its special cases FGSM / FGM / BIM.

One loop serves every norm (the :class:`~advlab.threat.Norm` strategy supplies
projection, step direction and random start) and every variant:

* FGSM / FGM (Goodfellow et al. 2014) is PGD with one full step (``eps``) and
  no random start;
* BIM (Kurakin et al. 2016) is PGD without random start;
* PGD (Madry et al. 2017) starts at a point drawn uniformly from the ball and
  can restart.
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int, require_loss, require_step, store_settings
from advlab.attacks.engine import (
    LossObjective,
    SteepestAscent,
    Tracker,
    default_step_size,
    iterate,
    random_start,
    run_restarts,
)
from advlab.criteria import Criterion
from advlab.threat import ThreatModel

__all__ = ["PGD", "BIM", "FGSM", "FGM"]


class PGD(Attack):
    """Projected gradient descent with per-sample bookkeeping.

    Args:
        steps: gradient steps per restart (``>= 1``).
        step_size: absolute step size; if ``None`` use ``rel_step_size * eps``.
        rel_step_size: step size relative to ``eps``; default ``2.5 / steps``
            (Madry et al.), i.e. ``1.0`` for a single step.
        random_init: start from a point drawn uniformly inside the ball.
        restarts: number of runs; runs after the first start at random points
            and only attack samples not broken yet.
        loss: objective, ``"ce"`` (cross-entropy), ``"cw"`` (margin) or ``"dlr"``.
        early_stop: stop attacking a sample as soon as it is successful (for
            evaluation; returns the first successful iterate).

    The returned point per sample is the best iterate seen: a successful one if
    any, otherwise the one with the highest objective. The clean input itself
    is never returned as the adversarial example (unless ``eps == 0``).

    References:
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
        Examples", ICLR 2015 (arXiv:1412.6572, 2014).
        Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical
        world", arXiv:1607.02533, 2016.
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018 (arXiv:1706.06083, 2017).
    """

    def __init__(
        self,
        steps: int = 40,
        step_size: float | None = None,
        rel_step_size: float | None = None,
        random_init: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        early_stop: bool = False,
    ) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        require_int("restarts", self.restarts, 1)
        require_step(self.step_size, self.rel_step_size)
        require_loss(self.loss)

    def step_length(self, eps: float) -> float:
        """The absolute step size used for a ball of radius ``eps``."""
        return default_step_size(eps, self.steps, self.step_size, self.rel_step_size)

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        objective = LossObjective(criterion, self.loss)
        tracker = Tracker(x, objective.initial_keys(x.shape[0], x))
        alpha = self.step_length(threat.eps)

        def run(idx: torch.Tensor | None, r: int) -> None:
            x0 = x if idx is None else x[idx]
            obj = objective if idx is None else objective.subset(idx)
            random = (self.random_init or r > 0) and threat.eps > 0
            start = random_start(x0, threat, generator) if random else x0.clone()
            iterate(model, x0, obj, threat, SteepestAscent(alpha), tracker, evaluations=self.steps,
                    start=start, idx=idx, early_stop=self.early_stop, record_start=random)

        run_restarts(self.restarts, tracker, x, run)
        return tracker.result(x, threat, {"step_size": alpha})


class BIM(PGD):
    """Basic iterative method (Kurakin et al. 2016): PGD without random start.

    References:
        Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical
        world", arXiv:1607.02533, 2016.
    """

    def __init__(self, steps: int = 10, step_size: float | None = None,
                 rel_step_size: float | None = None, loss: str = "ce",
                 early_stop: bool = False) -> None:
        super().__init__(steps=steps, step_size=step_size, rel_step_size=rel_step_size,
                         random_init=False, restarts=1, loss=loss, early_stop=early_stop)


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al. 2014): ``x + eps * sign(grad)``.

    Under a non-``linf`` threat model the step follows that norm's steepest
    ascent direction (FGM). It is PGD with one full step and no random start.

    References:
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
        Examples", ICLR 2015 (arXiv:1412.6572, 2014).
    """

    def __init__(self, loss: str = "ce") -> None:
        super().__init__(steps=1, rel_step_size=1.0, random_init=False, restarts=1, loss=loss)


FGM = FGSM
