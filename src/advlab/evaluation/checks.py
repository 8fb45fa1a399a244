"""Warnings that a robustness evaluation may be unreliable (gradient masking and friends).

The list follows AutoAttack's flags (Croce & Hein 2020) and the checklist of
Carlini et al. (2019): randomized outputs, probabilities instead of logits,
zero or vanishing gradients, gradients that disagree with the loss they claim
to differentiate, a black-box attack beating the white-box ones, and
perturbations outside the threat model. Each check returns
:class:`CheckWarning` objects and logs them; none prints or raises.

References:
    Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense of
    Security", ICML 2018. Carlini et al., "On Evaluating Adversarial
    Robustness", arXiv:1902.06705, 2019. Croce & Hein, "Reliable evaluation of
    adversarial robustness with an ensemble of diverse parameter-free
    attacks", ICML 2020.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from advlab.criteria import Misclassification
from advlab.threat import ThreatModel
from advlab.validation import eval_mode

__all__ = ["CheckWarning", "check_model", "check_threat", "check_black_box", "GRADIENT_FREE"]

log = logging.getLogger(__name__)

#: attack class names that use no gradients (score-based)
GRADIENT_FREE = ("Square",)


@dataclass
class CheckWarning:
    """One flag raised by a check.

    Attributes:
        code: ``randomized | probabilities | log_probabilities | zero_gradients |
            gradient_mismatch | black_box_beats_white_box | outside_threat_model``.
        message: what was seen and what to do.
        details: numbers behind the flag.
    """

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _warn(code: str, message: str, **details: Any) -> CheckWarning:
    log.warning("%s: %s", code, message)
    return CheckWarning(code, message, details)


def _margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return Misclassification(labels).loss(logits, "cw")


def check_model(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    step: float = 1e-3,
    max_samples: int = 64,
) -> list[CheckWarning]:
    """Checks on the model itself, on (up to ``max_samples`` of) ``x``.

    * ``randomized``: two forward passes on the same inputs differ (use
      expectation over transformation, e.g. :class:`advlab.physical.EOT`).
    * ``probabilities`` / ``log_probabilities``: outputs are softmax or
      log-softmax values; attacks on logits are stronger (remove the final layer).
    * ``zero_gradients``: the gradient of the CW margin w.r.t. the input is
      exactly zero for some points (a non-differentiable layer such as
      rounding or a ``detach``); gradient attacks cannot move them.
    * ``gradient_mismatch``: along the gradient direction the margin changes by
      less than a fifth or more than five times what the gradient predicts for a
      step of ``step`` (relative to the input range): gradients are shattered or
      replaced (BPDA / straight-through estimators).

    Args:
        model: classifier returning logits.
        x: inputs; labels: their classes.
        step: finite-difference step, as a fraction of the input range.
        max_samples: how many inputs to probe.

    Returns:
        The warnings raised (empty when all checks pass).
    """
    xs, ys = x[:max_samples], labels[:max_samples]
    if xs.shape[0] == 0:
        return []
    span = float(xs.max() - xs.min()) or 1.0
    with eval_mode(model, "check"):
        return _check_outputs(model, xs) + _check_gradients(model, xs, ys, step * span)


def _check_outputs(model: nn.Module, xs: torch.Tensor) -> list[CheckWarning]:
    """``randomized``, then ``probabilities`` or ``log_probabilities`` (model in eval mode)."""
    out: list[CheckWarning] = []
    with torch.no_grad():
        a, b = model(xs), model(xs)
    diff = float((a - b).abs().max())
    if diff > 1e-5 * (1 + float(a.abs().max())):
        out.append(_warn("randomized",
                         "two forward passes on the same inputs differ (max |diff| "
                         f"{diff:.3g}); the model is randomized: evaluate with expectation "
                         "over transformation (EOT) and several restarts", max_abs_diff=diff))
    rows = a.sum(1)
    if bool((a >= 0).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-4)):
        out.append(_warn("probabilities", "the model outputs probabilities (rows sum to 1); "
                         "attack the logits before the softmax"))
    elif bool((a <= 0).all()) and bool(
            torch.allclose(a.logsumexp(1), torch.zeros_like(rows), atol=1e-4)):
        out.append(_warn("log_probabilities", "the model outputs log-probabilities "
                         "(log-softmax); attack the logits before it"))
    return out


def _check_gradients(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor,
                     h: float) -> list[CheckWarning]:
    """``zero_gradients`` and ``gradient_mismatch`` (a finite-difference step ``h``)."""
    out: list[CheckWarning] = []
    xg = xs.detach().requires_grad_(True)
    with torch.enable_grad():
        m = _margin(model(xg), ys)
        (g,) = torch.autograd.grad(m.sum(), xg)
    gnorm = g.flatten(1).norm(dim=1)
    zero = gnorm == 0
    if bool(zero.any()):
        out.append(_warn("zero_gradients",
                         f"{int(zero.sum())} of {len(zero)} points have an exactly zero "
                         "input gradient; gradient attacks cannot move them (a "
                         "non-differentiable or saturated layer?): check with a black-box "
                         "attack (Square) and BPDA", points=int(zero.sum()), of=len(zero)))
    nz = ~zero
    if bool(nz.any()):
        d = g[nz] / gnorm[nz].reshape(-1, *([1] * (g.ndim - 1)))
        with torch.no_grad():
            m1 = _margin(model(xs[nz] + h * d), ys[nz])
        predicted = h * gnorm[nz]
        actual = m1 - m.detach()[nz]
        ratio = float((actual / predicted).median())
        if not 0.2 <= ratio <= 5.0:
            out.append(_warn("gradient_mismatch",
                             f"along the gradient the margin changes by {ratio:.3g} times "
                             "what the gradient predicts (median); the gradient does not "
                             "describe the model (masked, shattered or replaced gradients)",
                             median_ratio=ratio))
    return out


def check_threat(threat: ThreatModel, x_adv: torch.Tensor, x: torch.Tensor) -> list[CheckWarning]:
    """``outside_threat_model`` if any perturbation leaves the ball or the input box."""
    ok = threat.contains(x_adv, x)
    if bool(ok.all()):
        return []
    bad = int((~ok).sum())
    return [_warn("outside_threat_model",
                  f"{bad} perturbations lie outside the threat model {threat.to_dict()}; they "
                  "are not counted as broken", points=bad)]


def check_black_box(stage_names: list[str], black_box: list[bool],
                    broken: list[int]) -> list[CheckWarning]:
    """``black_box_beats_white_box`` if a score-based stage broke points after white-box stages.

    In a cascade every stage only sees points that the earlier stages left
    robust; when a gradient-free attack still breaks some after gradient
    attacks ran, the gradients were misleading for those points.
    """
    out = []
    seen_white = False
    for name, bb, k in zip(stage_names, black_box, broken, strict=True):
        if not bb:
            seen_white = True
        elif seen_white and k > 0:
            out.append(_warn("black_box_beats_white_box",
                             f"the black-box attack {name!r} broke {k} points that the white-box "
                             "attacks before it missed: the gradients are unreliable (gradient "
                             "masking); trust the black-box number and use stronger adaptive "
                             "attacks", stage=name, points=k))
    return out
