"""The momentum iterative fast gradient sign method (MI-FGSM) of Dong et al. (2018).

An iterative FGSM whose step follows an accumulated gradient: each step adds the
L1-normalised input gradient to a velocity ``g`` with decay ``mu`` and moves along
the norm's steepest direction of ``g``. The momentum keeps the update direction
stable across iterations, so the examples overfit the source model less and
transfer better than those of plain iterative FGSM, in particular from an
ensemble of models.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, input_grad, require_int
from advlab.criteria import Criterion
from advlab.losses import LOSSES
from advlab.threat import ThreatModel

__all__ = ["MIFGSM"]


class MIFGSM(Attack):
    """Momentum iterative FGSM (Dong et al. 2018, Algorithm 1).

    ``g_{t+1} = mu * g_t + grad_t / ||grad_t||_1`` and
    ``x_{t+1} = clip_{x, eps}(x_t + alpha * d(g_{t+1}))`` with ``alpha = eps / steps``
    and ``d`` the threat model's steepest-ascent direction (``sign`` for Linf, the
    unit vector for L2). No random start. As in the paper the *last* iterate is
    returned (the attack is meant to transfer, so it does not pick the iterate that
    fools the source model best); ``success`` is measured on the source model.

    Args:
        steps: iterations ``T`` (the paper uses 10).
        decay: momentum ``mu`` (the paper's 1.0); ``0`` gives iterative FGSM (BIM)
            with step ``eps / steps``.
        step_size: absolute step; default ``eps / steps``.
        loss: objective, ``"ce"``, ``"cw"`` or ``"dlr"`` (see :mod:`advlab.losses`).

    References:
        Dong, Liao, Pang, Su, Zhu, Hu & Li, "Boosting Adversarial Attacks with
        Momentum", CVPR 2018 (arXiv:1710.06081).
    """

    def __init__(self, steps: int = 10, decay: float = 1.0, step_size: float | None = None,
                 loss: str = "ce") -> None:
        self.steps = steps
        self.decay = decay
        self.step_size = step_size
        self.loss = loss

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        if not self.decay >= 0:
            raise ValueError(f"decay must be >= 0, got {self.decay}")
        if self.step_size is not None and not self.step_size >= 0:
            raise ValueError(f"step_size must be >= 0, got {self.step_size}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; use one of {sorted(LOSSES)}")

    def settings(self) -> dict[str, Any]:
        return super().settings()

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        self._check_settings()
        norm = threat.strategy
        eps = threat.eps
        lo, hi = threat.bounds
        alpha = float(self.step_size) if self.step_size is not None else eps / self.steps
        xa = x.clone()
        g = torch.zeros_like(x)
        dims = tuple(range(1, x.ndim))
        for _ in range(self.steps):
            _, grad = input_grad(model, xa, criterion, self.loss)
            with torch.no_grad():
                l1 = grad.abs().sum(dim=dims, keepdim=True).clamp_min(1e-12)
                g = self.decay * g + grad / l1
                xa = xa + alpha * norm.normalize_grad(g)
                xa = torch.clamp(x + norm.project(xa - x, eps), lo, hi)
        with torch.no_grad():
            logits = model(xa)
        n = x.shape[0]
        return AttackResult(x_adv=xa, success=criterion.is_success(logits), logits=logits,
                            distance=norm.distance(xa, x),
                            passes=torch.full((n,), self.steps, dtype=torch.long, device=x.device),
                            forwards=torch.ones(n, dtype=torch.long, device=x.device),
                            info={"step_size": alpha})
