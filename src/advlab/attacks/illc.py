"""Iterative least-likely class (ILLC, Kurakin et al. 2016).

:class:`ILLC` is BIM toward the class the model finds least likely on the clean
input; its goal is still misclassification.
"""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int, require_step, store_settings
from advlab.attacks.pgd import PGD
from advlab.criteria import Criterion, TargetedMisclassification
from advlab.threat import ThreatModel

__all__ = ["ILLC", "least_likely_class"]


def least_likely_class(logits: torch.Tensor) -> torch.Tensor:
    """The class with the lowest logit per sample (``y_LL`` of Kurakin et al.)."""
    return logits.argmin(dim=1)


class ILLC(Attack):
    """Iterative least-likely class method (Kurakin et al. 2016).

    BIM with a targeted objective toward ``y_LL = argmin_y p(y | x)`` on the
    clean input: ``x <- clip(x - step * sign(grad CE(x, y_LL)))``. It is an
    untargeted attack that uses the least-likely class as a surrogate target,
    so the success it reports is that of the given criterion
    (misclassification), and the returned point is the best iterate toward
    ``y_LL``. ``info["targets"]`` holds the least-likely classes.

    Args:
        steps: iterations; Kurakin et al. use ``min(eps*255 + 4, 1.25 eps*255)``.
        step_size: absolute step; default ``rel_step_size * eps``.
        rel_step_size: step relative to eps; default ``2.5 / steps`` (Kurakin
            et al. use 1/255 on a 0-255 scale, i.e. ``1 / (eps * 255)``).

    References:
        Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical
        world", arXiv:1607.02533, 2016.
    """

    def __init__(self, steps: int = 10, step_size: float | None = None,
                 rel_step_size: float | None = None) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        require_step(self.step_size, self.rel_step_size)

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        if criterion.targeted:
            raise ValueError("ILLC chooses its own target (the least-likely class); pass the true "
                             "labels, or use BIM with a TargetedMisclassification criterion")
        with torch.no_grad():
            clean = model(x)
        targets = least_likely_class(clean)
        bim = PGD(steps=self.steps, step_size=self.step_size, rel_step_size=self.rel_step_size,
                  random_init=False, restarts=1, loss="ce")
        r = bim._run(model, x, TargetedMisclassification(targets), threat, generator)
        return AttackResult(x_adv=r.x_adv, success=criterion.is_success(r.logits), logits=r.logits,
                            distance=r.distance, passes=r.passes, forwards=r.forwards + 1,
                            info={**r.info, "targets": targets})
