"""Virtual adversarial training (VAT): local distributional smoothing, with or without labels.

The virtual adversarial direction is the dominant eigenvector of the Hessian of
``r -> KL(p(.|x) || p(.|x + r))`` at ``r = 0`` (the Fisher information of the
model's output distribution w.r.t. the input). It needs no label, so the same
loss regularises labelled and unlabelled inputs; :func:`vat_direction` finds it
by power iteration with finite differences, :func:`vat_loss` is the LDS penalty
and :class:`VAT` the training objective (cross-entropy on labelled data + LDS on
all data + optional entropy minimisation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import store_settings
from advlab.defenses.adversarial_training import (
    _check_int,
    _check_number,
    _EvalOnly,
    _kl,
    _Objective,
    unwrap,
)
from advlab.models.zoo import training_loss
from advlab.threat import get_norm

__all__ = ["vat_direction", "vat_perturbation", "vat_loss", "entropy", "VAT"]


def _unit(d: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 normalisation (zero rows stay zero)."""
    flat = d.flatten(1)
    n = flat.norm(dim=1).clamp_min(1e-12)
    return (flat / n[:, None]).view_as(d)


def vat_direction(
    model: nn.Module,
    x: torch.Tensor,
    *,
    xi: float = 1e-6,
    iterations: int = 1,
    logits: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Unit-L2 virtual adversarial direction per sample, by power iteration.

    Starting from a random Gaussian direction ``d``, each iteration replaces ``d``
    by the normalised gradient of ``KL(p(x) || p(x + xi d))`` w.r.t. ``d``, which
    for small ``xi`` is ``xi H d``: one step of the power method on the Hessian
    ``H`` of the KL divergence at ``r = 0``. Costs ``iterations`` forward+backward
    passes per example (plus one forward for ``p(x)`` unless ``logits`` are given).

    Args:
        model: classifier returning logits (run as given).
        x: inputs ``(N, ...)``.
        xi: finite-difference step (``> 0``); small enough for the quadratic
            approximation, large enough for the floating-point precision.
        iterations: power iterations (``>= 1``; 1 in the paper).
        logits: ``model(x)`` if already computed (treated as constant).
        generator: random source of the initial direction.

    Returns:
        Directions of unit L2 norm per sample, shape of ``x`` (detached).

    References:
        Miyato et al., "Distributional Smoothing with Virtual Adversarial
        Training", ICLR 2016 (arXiv:1507.00677), Sec. 2.
        Miyato et al., "Virtual Adversarial Training: A Regularization Method for
        Supervised and Semi-Supervised Learning", IEEE TPAMI 2018 (arXiv:1704.03976),
        eq. (10)-(13).
    """
    if logits is None:
        with torch.no_grad():
            logits = model(x)
    target = logits.detach()
    d = _unit(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype))
    for _ in range(iterations):
        r = (xi * d).requires_grad_(True)
        with torch.enable_grad():
            kl = _kl(target, model(x.detach() + r), reduction="sum")
            (g,) = torch.autograd.grad(kl, r)
        d = _unit(g.detach())
    return d


def vat_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    xi: float = 1e-6,
    iterations: int = 1,
    norm: str = "l2",
    logits: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The virtual adversarial perturbation ``r_vadv`` of size ``eps`` in ``norm``.

    For ``"l2"`` it is ``eps * d`` with ``d`` from :func:`vat_direction`; for
    ``"linf"`` it is ``eps * sign(d)`` (the steepest-ascent step of that norm,
    Miyato et al. 2016 also evaluate it).

    References:
        Miyato et al., arXiv:1704.03976 (2017), eq. (13).
    """
    d = vat_direction(model, x, xi=xi, iterations=iterations, logits=logits, generator=generator)
    return float(eps) * get_norm(norm).normalize_grad(d)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy ``-sum_y p(y|x) log p(y|x)`` of the softmax outputs (conditional entropy)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1).mean()


def vat_loss(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    xi: float = 1e-6,
    iterations: int = 1,
    norm: str = "l2",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Local distributional smoothness penalty ``mean KL(p(x) || p(x + r_vadv))``.

    ``p(x)`` is treated as a constant (as in the paper); the gradient flows through
    ``p(x + r_vadv)`` into the parameters. Usable in any training loop:
    ``loss = ce + alpha * vat_loss(model, x_unlabelled, eps=2.0, generator=g)``.

    Args:
        model: classifier returning logits.
        x: (unlabelled) inputs.
        eps: perturbation size (L2 by default).
        xi: power-iteration finite-difference step.
        iterations: power iterations.
        norm: ``"l2"`` or ``"linf"``.
        generator: random source of the power iteration's start.

    Returns:
        The scalar LDS penalty.

    References:
        Miyato et al., arXiv:1507.00677 (2015) and arXiv:1704.03976 (2017).
    """
    with torch.no_grad():
        target = model(x)
    r = vat_perturbation(model, x, eps=eps, xi=xi, iterations=iterations, norm=norm,
                         logits=target, generator=generator)
    return _kl(target, model(x + r))


class VAT(_Objective):
    """Virtual adversarial training objective, supervised or semi-supervised.

    ``CE(labelled) + alpha * LDS(inputs) [+ entropy(unlabelled)]``, where LDS is
    measured on the unlabelled batch when one is given (semi-supervised) and on
    the labelled batch otherwise.

    Args:
        eps: size of the virtual adversarial perturbation (L2 by default; the
            papers tune it on validation data, 1-5 on MNIST pixels in [0, 1]).
        xi: power-iteration finite-difference step (``1e-6`` in the paper).
        iterations: power iterations (``>= 1``; 1 suffices in the paper).
        alpha: weight of the LDS term (``>= 0``; 1 in the paper).
        entropy_min: add the conditional entropy of the unlabelled predictions
            (VAT+EntMin, Miyato et al. 2017, Sec. 4.2).
        norm: ``"l2"`` or ``"linf"``.

    When called, returns ``(loss, labelled logits, passes)``: passes per labelled
    example without unlabelled data, otherwise the *total* passes of the step
    (labelled: 1 each; unlabelled: ``iterations + 1``, ``+ 1`` with entropy).

    References:
        Miyato et al., "Distributional Smoothing with Virtual Adversarial
        Training", ICLR 2016 (arXiv:1507.00677).
        Miyato et al., "Virtual Adversarial Training: A Regularization Method for
        Supervised and Semi-Supervised Learning", IEEE TPAMI 2018 (arXiv:1704.03976).
    """

    name = "vat"
    semi_supervised = True

    def __init__(self, eps: float = 2.0, xi: float = 1e-6, iterations: int = 1,
                 alpha: float = 1.0, entropy_min: bool = False, norm: str = "l2") -> None:
        store_settings(self, locals())

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` on bad settings."""
        _check_number("eps", self.eps, 0.0)
        _check_number("xi", self.xi, 0.0, strict_lo=True)
        _check_int("iterations", self.iterations, 1)
        _check_number("alpha", self.alpha, 0.0)
        if not isinstance(self.entropy_min, bool):
            raise TypeError(f"entropy_min must be a bool, got {type(self.entropy_min).__name__}")
        if get_norm(self.norm).name not in ("l2", "linf"):
            raise ValueError(f"VAT supports norm 'l2' or 'linf', got {self.norm!r}")

    def settings(self) -> dict[str, Any]:
        return super().settings()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None, *,
                 unlabeled: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        self.validate()
        xu = x if unlabeled is None else unlabeled
        n, nu = x.shape[0], xu.shape[0]
        with _EvalOnly(unwrap(model)) as inner:
            with torch.no_grad():
                target = inner(xu)
            r = vat_perturbation(inner, xu, eps=float(self.eps), xi=float(self.xi),
                                 iterations=self.iterations, norm=self.norm, logits=target,
                                 generator=generator)
        parts = [x, xu + r]
        if self.entropy_min and unlabeled is not None:
            parts.append(xu)
        logits = model(torch.cat(parts))
        lab, adv = logits[:n], logits[n:n + nu]
        loss = training_loss(model, lab, y) + float(self.alpha) * _kl(target, adv)
        ent_pass = 0
        if self.entropy_min:
            ent_logits = logits[n + nu:] if unlabeled is not None else lab
            loss = loss + entropy(ent_logits)
            ent_pass = 1 if unlabeled is not None else 0
        if unlabeled is None:
            return loss, lab, self.iterations + 2
        return loss, lab, n + nu * (self.iterations + 1 + ent_pass)
