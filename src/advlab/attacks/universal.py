"""Universal adversarial perturbations: one perturbation that fools a model on most inputs.

:class:`UniversalPerturbation` follows scikit-learn: ``fit(model, x, threat)`` returns
``self`` and the learned perturbation is ``perturbation_``; ``transform(x)`` applies it
and ``fooling_rate(model, x)`` measures it on held-out images. :class:`UniversalAttack`
wraps the same algorithm in the :class:`~advlab.attacks.base.Attack` contract (fit on the
batch, then apply), so it can be evaluated like any other bounded attack.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, store_settings
from advlab.criteria import Criterion
from advlab.threat import ThreatModel
from advlab.validation import check_inputs, eval_mode

__all__ = ["UniversalPerturbation", "UniversalAttack", "deepfool_step"]

log = logging.getLogger(__name__)

_TINY = 1e-12


def deepfool_step(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, norm: str,
                  steps: int = 10, overshoot: float = 0.02,
                  bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimal perturbation moving each ``x`` out of class ``labels`` (DeepFool, batched).

    The model is linearised at the current point; the step goes to the nearest
    linearised boundary in the given norm (dual norm L2 for ``l2``, L1 for ``linf``,
    Linf for ``l1``) and is repeated until the label changes or ``steps`` run out.

    Returns:
        ``(r, passes)``: the perturbation, scaled by ``1 + overshoot``, and the
        per-sample number of backward passes.

    References:
        Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to
        fool deep neural networks", CVPR 2016 (arXiv:1511.04599).
    """
    n = x.shape[0]
    r_tot = torch.zeros_like(x)
    passes = torch.zeros(n, dtype=torch.long, device=x.device)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    lo, hi = bounds
    for _ in range(steps):
        xi = torch.clamp(x + (1 + overshoot) * r_tot, lo, hi).detach()
        with torch.no_grad():
            logits = model(xi)
        active &= logits.argmax(1) == labels
        if not bool(active.any()):
            break
        num_classes = logits.shape[1]
        # all class gradients in one backward pass: one replica of the batch per class
        rep = xi.repeat(num_classes, *[1] * (x.ndim - 1)).requires_grad_(True)
        with torch.enable_grad():
            out = model(rep).reshape(num_classes, n, num_classes)
            picked = out.diagonal(dim1=0, dim2=2).sum()  # sum_k out[k, :, k]
            (g,) = torch.autograd.grad(picked, rep)
        grads = list(g.reshape(num_classes, *x.shape).unbind(0))
        passes += active.long() * num_classes
        g_all = torch.stack(grads, dim=1)  # (N, C, ...)
        ar = torch.arange(n, device=x.device)
        f = logits - logits[ar, labels][:, None]  # (N, C), <= 0 for active samples
        w = g_all - g_all[ar, labels][:, None]
        wf = w.flatten(2)
        if norm == "l2":
            wn = wf.norm(dim=2)
        elif norm == "linf":
            wn = wf.abs().sum(dim=2)
        else:
            wn = wf.abs().amax(dim=2)
        dist = f.abs() / (wn + _TINY)
        dist[ar, labels] = float("inf")
        k = dist.argmin(dim=1)
        fk = f[ar, k].abs() + 1e-4
        wk = w[ar, k]
        if norm == "l2":
            r = wk * (fk / (wn[ar, k].pow(2) + _TINY)).reshape(-1, *[1] * (x.ndim - 1))
        elif norm == "linf":
            r = wk.sign() * (fk / (wn[ar, k] + _TINY)).reshape(-1, *[1] * (x.ndim - 1))
        else:
            flat = wk.flatten(1)
            j = flat.abs().argmax(dim=1)
            r_flat = torch.zeros_like(flat)
            r_flat[ar, j] = flat[ar, j].sign() * fk / (flat[ar, j].abs() + _TINY)
            r = r_flat.reshape(wk.shape)
        r_tot = r_tot + r * active.reshape(-1, *[1] * (x.ndim - 1)).to(r.dtype)
    return (1 + overshoot) * r_tot, passes


class UniversalPerturbation:
    """The universal perturbation algorithm of Moosavi-Dezfooli et al. (2017).

    Passes over the fitting set; for every point that ``x + v`` does not fool yet, a
    DeepFool step finds the minimal extra perturbation sending it to another class and
    ``v`` is updated and projected back onto the ``eps`` ball. Stops when the fooling
    rate on the fitting set reaches ``target_fooling_rate`` (the paper's ``1 - delta``)
    or after ``max_passes``. The algorithm is not monotone (a later point can undo an
    earlier one's progress), so the perturbation of the best pass is kept.

    Args:
        max_passes: passes over the fitting set.
        target_fooling_rate: stop once this share of the fitting set is fooled.
        overshoot: DeepFool overshoot.
        deepfool_steps: DeepFool iterations per point.
        batch_size: points whose DeepFool steps are computed at the same ``v``; their
            updates are then applied and projected one after the other. ``1`` is the
            paper's sequential algorithm; larger is faster.

    Attributes (after :meth:`fit`):
        perturbation_: the universal perturbation, shape of one input ``(C, H, W)``.
        fooling_rate_: fooling rate on the fitting set.
        history_: fooling rate on the fitting set after each pass.
        passes_: backward passes spent.
        threat_: the threat model it was fitted for.

    References:
        Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, "Universal adversarial perturbations",
        CVPR 2017 (arXiv:1610.08401), Algorithm 1.
    """

    def __init__(self, max_passes: int = 5, target_fooling_rate: float = 0.8,
                 overshoot: float = 0.02, deepfool_steps: int = 10, batch_size: int = 1) -> None:
        store_settings(self, locals())

    def _check(self) -> None:
        if not isinstance(self.max_passes, int) or self.max_passes < 1:
            raise ValueError(f"max_passes must be an integer >= 1, got {self.max_passes!r}")
        if not 0 <= self.target_fooling_rate <= 1:
            raise ValueError(f"target_fooling_rate must be in [0, 1], got {self.target_fooling_rate}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.deepfool_steps, int) or self.deepfool_steps < 1:
            raise ValueError(f"deepfool_steps must be an integer >= 1, got {self.deepfool_steps!r}")
        if self.overshoot < 0:
            raise ValueError(f"overshoot must be >= 0, got {self.overshoot}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"UniversalPerturbation({args})"

    def settings(self) -> dict[str, Any]:
        return {"attack": "UniversalPerturbation",
                **{k: v for k, v in vars(self).items() if not k.endswith("_")}}

    def fit(self, model: nn.Module, x: torch.Tensor, threat: ThreatModel,
            labels: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> UniversalPerturbation:
        """Learn ``perturbation_`` on ``x``.

        Args:
            model: a torch model returning logits.
            x: fitting images in ``threat.bounds``.
            threat: norm and radius of the perturbation.
            labels: the classes to leave; default the model's own predictions on ``x``
                (the paper's fooling criterion ``k(x + v) != k(x)``).
            generator: shuffles the order of the points in each pass (without one the
                points are visited in order; the global RNG is never used).

        Returns:
            ``self``.
        """
        self._check()
        if not isinstance(threat, ThreatModel):
            raise TypeError("threat must be a ThreatModel, e.g. ThreatModel('linf', 0.1)")
        check_inputs(model, x, threat.bounds)
        lo, hi = threat.bounds
        n = x.shape[0]
        v = torch.zeros_like(x[:1])
        best_v, best_rate = v.clone(), 0.0
        self.passes_ = 0
        self.history_: list[float] = []
        with eval_mode(model):
            with torch.no_grad():
                ref = labels.to(x.device) if labels is not None else _predict(model, x)
            if ref.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {tuple(ref.shape)}")
            if threat.eps > 0 and n:
                for _ in range(self.max_passes):
                    order = (torch.randperm(n, generator=generator, device=generator.device)
                             if generator is not None else torch.arange(n)).to(x.device)
                    for s in range(0, n, self.batch_size):
                        b = order[s:s + self.batch_size]
                        xb = torch.clamp(x[b] + v, lo, hi)
                        with torch.no_grad():
                            still = model(xb).argmax(1) == ref[b]
                        if not bool(still.any()):
                            continue
                        r, p = deepfool_step(model, xb[still], ref[b][still], threat.norm,
                                             self.deepfool_steps, self.overshoot, threat.bounds)
                        self.passes_ += int(p.sum())
                        for ri in r:
                            v = threat.strategy.project(v + ri[None], threat.eps)
                    rate = self._rate(model, x, ref, v, threat)
                    self.history_.append(rate)
                    if rate > best_rate:
                        best_v, best_rate = v.clone(), rate
                    log.info("universal perturbation: pass %d, fooling rate %.3f", len(self.history_), rate)
                    if rate >= self.target_fooling_rate:
                        break
            self.fooling_rate_ = best_rate if n else math.nan
        self.perturbation_ = best_v[0].detach().clone()
        self.threat_ = threat
        return self

    @staticmethod
    def _rate(model: nn.Module, x: torch.Tensor, ref: torch.Tensor, v: torch.Tensor,
              threat: ThreatModel) -> float:
        with torch.no_grad():
            pred = _predict(model, torch.clamp(x + v, *threat.bounds))
        return float((pred != ref).float().mean())

    def _check_fitted(self) -> None:
        if not hasattr(self, "perturbation_"):
            raise ValueError("UniversalPerturbation is not fitted yet; call .fit(model, x, threat)")

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``x + perturbation_`` clipped to the bounds (a new tensor)."""
        self._check_fitted()
        if tuple(x.shape[1:]) != tuple(self.perturbation_.shape):
            raise ValueError(f"inputs of shape {tuple(x.shape)} do not match the perturbation "
                             f"{tuple(self.perturbation_.shape)}")
        return torch.clamp(x + self.perturbation_.to(x), *self.threat_.bounds)

    def fooling_rate(self, model: nn.Module, x: torch.Tensor) -> float:
        """Share of ``x`` whose predicted label changes when the perturbation is added."""
        self._check_fitted()
        check_inputs(model, x, self.threat_.bounds)
        if x.shape[0] == 0:
            return math.nan
        with eval_mode(model), torch.no_grad():
            return float((_predict(model, self.transform(x)) != _predict(model, x)).float().mean())


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    outs = [model(x[s:s + batch_size]).argmax(1) for s in range(0, x.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, dtype=torch.long, device=x.device)


class UniversalAttack(Attack):
    """The universal perturbation as a bounded attack: fit on the batch, then apply it to all.

    Untargeted only (success: the prediction differs from the labels). Settings as in
    :class:`UniversalPerturbation`.

    References:
        Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, "Universal adversarial perturbations",
        CVPR 2017 (arXiv:1610.08401).
    """

    def __init__(self, max_passes: int = 5, target_fooling_rate: float = 0.8,
                 overshoot: float = 0.02, deepfool_steps: int = 10, batch_size: int = 1) -> None:
        store_settings(self, locals())

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        if criterion.targeted:
            raise ValueError("universal perturbations are untargeted; pass labels or Misclassification")
        up = UniversalPerturbation(self.max_passes, self.target_fooling_rate, self.overshoot,
                                   self.deepfool_steps, self.batch_size)
        up.fit(model, x, threat, labels=criterion.classes, generator=generator)
        x_adv = up.transform(x)
        with torch.no_grad():
            logits = model(x_adv)
        n = x.shape[0]
        per = max(1, math.ceil(up.passes_ / max(n, 1)))
        return AttackResult(
            x_adv=x_adv, success=criterion.is_success(logits), logits=logits,
            distance=threat.strategy.distance(x_adv, x),
            passes=torch.full((n,), per, dtype=torch.long, device=x.device),
            forwards=torch.full((n,), len(up.history_) + 1, dtype=torch.long, device=x.device),
            info={"fooling_rate": up.fooling_rate_, "perturbation": up.perturbation_})
