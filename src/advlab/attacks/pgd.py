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

from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int
from advlab.criteria import Criterion
from advlab.losses import LOSSES
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
        self.steps = steps
        self.step_size = step_size
        self.rel_step_size = rel_step_size
        self.random_init = random_init
        self.restarts = restarts
        self.loss = loss
        self.early_stop = early_stop

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        require_int("restarts", self.restarts, 1)
        if self.step_size is not None and self.step_size < 0:
            raise ValueError(f"step_size must be >= 0, got {self.step_size}")
        if self.rel_step_size is not None and self.rel_step_size < 0:
            raise ValueError(f"rel_step_size must be >= 0, got {self.rel_step_size}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; use one of {sorted(LOSSES)}")

    def step_length(self, eps: float) -> float:
        """The absolute step size used for a ball of radius ``eps``."""
        if self.step_size is not None:
            return float(self.step_size)
        rel = self.rel_step_size if self.rel_step_size is not None else min(1.0, 2.5 / self.steps)
        return float(rel) * eps

    def settings(self) -> dict[str, Any]:
        return super().settings()

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        criterion: Criterion,
        threat: ThreatModel,
        generator: torch.Generator | None,
    ) -> AttackResult:
        self._check_settings()
        n = x.shape[0]
        norm = threat.strategy
        eps = threat.eps
        lo, hi = threat.bounds
        alpha = self.step_length(eps)

        best_x = x.clone()
        best_succ = torch.zeros(n, dtype=torch.bool, device=x.device)
        best_obj = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
        best_logits: torch.Tensor | None = None
        passes = torch.zeros(n, dtype=torch.long, device=x.device)
        forwards = torch.zeros(n, dtype=torch.long, device=x.device)

        def record(idx: torch.Tensor | None, xa: torch.Tensor, logits: torch.Tensor,
                   crit: Criterion, obj: torch.Tensor | None = None) -> torch.Tensor:
            """Keep the better of the stored and the current iterate per sample.

            ``idx is None`` means every sample is active in original order: then the
            update is done in place with masks instead of gathers and scatters.
            """
            nonlocal best_logits
            succ = crit.is_success(logits)
            if obj is None:
                obj = crit.loss(logits, self.loss)
            if best_logits is None:
                best_logits = logits.new_full((n, logits.shape[1]), float("nan"))
            if idx is None:
                better = (succ & ~best_succ) | ((succ == best_succ) & (obj > best_obj))
                m = better.view(-1, *([1] * (x.ndim - 1)))
                best_x.copy_(torch.where(m, xa, best_x))
                best_logits.copy_(torch.where(better[:, None], logits, best_logits))
                best_succ.logical_or_(succ & better)
                best_obj.copy_(torch.where(better, obj, best_obj))
                return succ
            b_succ, b_obj = best_succ[idx], best_obj[idx]
            better = (succ & ~b_succ) | ((succ == b_succ) & (obj > b_obj))
            upd = idx[better]
            best_x[upd] = xa[better]
            best_succ[upd] = succ[better]
            best_obj[upd] = obj[better]
            best_logits[upd] = logits[better]
            return succ

        for restart in range(self.restarts):
            if restart == 0:
                idx = torch.arange(n, device=x.device)
                all_active = True  # idx == arange(n): cheap in-place bookkeeping
                x0 = x
                crit = criterion
            else:
                idx = (~best_succ).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                all_active = False
                x0 = x[idx]
                crit = criterion[idx]
            start_random = (self.random_init or restart > 0) and eps > 0
            if start_random:
                delta = norm.random_init(x0.shape, eps, generator=generator,
                                         device=x.device, dtype=x.dtype)
                xa = torch.clamp(x0 + delta, lo, hi)
            else:
                xa = x0.clone()
            active_passes = 0  # passes spent by every sample of the current active set
            for t in range(self.steps):
                xg = xa.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = model(xg)
                    obj = crit.loss(logits, self.loss)
                    (grad,) = torch.autograd.grad(obj.sum(), xg)
                logits, obj = logits.detach(), obj.detach()
                active_passes += 1
                if t > 0 or start_random:  # the clean input itself is not a candidate ...
                    succ = record(None if all_active else idx, xa, logits, crit, obj)
                elif self.early_stop:  # ... unless it is already a success (early stop only)
                    succ = crit.is_success(logits)
                    if bool(succ.any()):
                        hit = succ.nonzero().squeeze(1)
                        record(idx[hit], xa[hit], logits[hit], crit[hit], obj[hit])
                else:
                    succ = None
                if self.early_stop and succ is not None and bool(succ.any()):
                    passes[idx] += active_passes
                    active_passes = 0
                    keep = ~succ
                    idx, xa, x0, grad = idx[keep], xa[keep], x0[keep], grad[keep]
                    crit = crit[keep]
                    all_active = False
                    if idx.numel() == 0:
                        break
                with torch.no_grad():
                    xa = xa + alpha * norm.normalize_grad(grad)
                    xa = torch.clamp(x0 + norm.project(xa - x0, eps), lo, hi)
            if active_passes:
                passes[idx] += active_passes
            if idx.numel():
                with torch.no_grad():
                    logits = model(xa)
                forwards[idx] += 1
                record(None if all_active else idx, xa, logits, crit)

        assert best_logits is not None or n == 0
        if best_logits is None:
            best_logits = x.new_zeros((0, 0))
        return AttackResult(
            x_adv=best_x,
            success=best_succ,
            logits=best_logits,
            distance=norm.distance(best_x, x),
            passes=passes,
            forwards=forwards,
            info={"step_size": alpha},
        )


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

    def settings(self) -> dict[str, Any]:
        return {"attack": "FGSM", "loss": self.loss}


FGM = FGSM
