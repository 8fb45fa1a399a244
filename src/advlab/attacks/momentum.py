"""The momentum iterative fast gradient sign method (MI-FGSM) of Dong et al. (2018).

An iterative FGSM whose step follows an accumulated gradient: each step adds the
L1-normalised input gradient to a velocity ``g`` with decay ``mu`` and moves along
the norm's steepest direction of ``g``. The momentum keeps the update direction
stable across iterations, so the examples overfit the source model less and
transfer better than those of plain iterative FGSM, in particular from an
ensemble of models.
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int, require_loss, require_step, store_settings
from advlab.attacks.engine import LossObjective, StepRule, Tracker, iterate, steepest_step
from advlab.criteria import Criterion
from advlab.threat import ThreatModel

__all__ = ["MIFGSM"]


class MomentumStep(StepRule):
    """MI-FGSM's step: ``g <- mu g + grad / ||grad||_1``, ``x <- P(x + alpha d(g))`` (Dong et al. 2018)."""

    def __init__(self, alpha: float, decay: float) -> None:
        self.alpha = alpha
        self.decay = decay
        self.velocity: torch.Tensor | None = None

    def keep(self, mask: torch.Tensor) -> None:
        if self.velocity is not None:
            self.velocity = self.velocity[mask]

    def step(self, t: int, xa: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor,
             threat: ThreatModel) -> torch.Tensor:
        with torch.no_grad():
            dims = tuple(range(1, grad.ndim))
            l1 = grad.abs().sum(dim=dims, keepdim=True).clamp_min(1e-12)
            g = torch.zeros_like(grad) if self.velocity is None else self.velocity
            self.velocity = self.decay * g + grad / l1
        return steepest_step(xa, x0, self.velocity, self.alpha, threat)


class MIFGSM(Attack):
    """Momentum iterative FGSM (Dong et al. 2018, Algorithm 1).

    ``g_{t+1} = mu * g_t + grad_t / ||grad_t||_1`` and
    ``x_{t+1} = clip_{x, eps}(x_t + alpha * d(g_{t+1}))`` with ``alpha = eps / steps``
    and ``d`` the threat model's steepest-ascent direction (``sign`` for Linf, the
    unit vector for L2). No random start. By default, as in the paper, the *last*
    iterate is returned (the attack is meant to transfer, so it does not pick the
    iterate that fools the source model best); ``select="best"`` returns the best
    iterate on the source model like PGD. ``success`` is measured on the source model.

    Args:
        steps: iterations ``T`` (the paper uses 10).
        decay: momentum ``mu`` (the paper's 1.0); ``0`` gives iterative FGSM (BIM)
            with step ``eps / steps``.
        step_size: absolute step; default ``eps / steps``.
        loss: objective, ``"ce"``, ``"cw"`` or ``"dlr"`` (see :mod:`advlab.losses`).
        select: ``"last"`` (the paper) or ``"best"`` iterate.
        early_stop: stop a sample once it fools the source model.

    References:
        Dong, Liao, Pang, Su, Zhu, Hu & Li, "Boosting Adversarial Attacks with
        Momentum", CVPR 2018 (arXiv:1710.06081).
    """

    SELECTS = ("last", "best")

    def __init__(self, steps: int = 10, decay: float = 1.0, step_size: float | None = None,
                 loss: str = "ce", select: str = "last", early_stop: bool = False) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        if not self.decay >= 0:
            raise ValueError(f"decay must be >= 0, got {self.decay}")
        require_step(self.step_size, None)
        require_loss(self.loss)
        if self.select not in self.SELECTS:
            raise ValueError(f"unknown select {self.select!r}; use one of {list(self.SELECTS)}")

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        alpha = float(self.step_size) if self.step_size is not None else threat.eps / self.steps
        objective = LossObjective(criterion, self.loss)
        tracker = Tracker(x, objective.initial_keys(x.shape[0], x), keep=self.select)
        iterate(model, x, objective, threat, MomentumStep(alpha, float(self.decay)), tracker,
                evaluations=self.steps, start=x.clone(), early_stop=self.early_stop,
                record_start=False)
        return tracker.result(x, threat, {"step_size": alpha})
