"""DDN: Decoupled Direction and Norm, a fast minimum-L2-norm attack.

DDN decouples the two things a minimum-norm attack has to find. The direction
of the perturbation follows normalised cross-entropy gradient steps; its norm
``eps_k`` is set per sample on its own: shrunk by a factor ``1 - gamma`` while
the current iterate is adversarial and grown by ``1 + gamma`` while it is
not, so it settles where the direction meets the decision boundary.

It is a configuration of the engine (:func:`~advlab.attacks.engine.iterate`):
:class:`~advlab.attacks.engine.MinimumNormObjective` evaluates the cross-entropy and ranks iterates by
``(success, -||x' - x||_2)`` (the tracker then keeps the smallest successful
iterate), and :class:`_DecoupledNormStep` holds the per-sample ``eps_k``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int, store_settings
from advlab.attacks.engine import Evaluation, MinimumNormObjective, StepRule, Tracker, iterate
from advlab.criteria import Criterion
from advlab.threat import ThreatModel

__all__ = ["DDN"]

_TINY = 1e-12
#: the step size anneals (cosine) from ``step_size`` down to this fraction of it
#: (Rony et al.'s code: a cosine schedule from 1 to 0.01)
_FINAL_STEP_FRACTION = 0.01


def _l2(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(p=2, dim=1)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


class _DecoupledNormStep(StepRule):
    """DDN's step: a normalised gradient step on ``delta``, then ``delta`` rescaled to ``eps_k``.

    ``eps_k`` is per sample: ``(1 - gamma) eps_{k-1}`` if the iterate the
    gradient was taken at is adversarial, else ``(1 + gamma) eps_{k-1}``,
    capped at the largest L2 distance the box allows around ``x0``.
    """

    def __init__(self, eps: torch.Tensor, cap: torch.Tensor, gamma: float, step_size: float,
                 steps: int) -> None:
        self.eps = eps
        self.cap = cap
        self.gamma = gamma
        self.step_size = step_size
        self.steps = steps
        self.adv = torch.zeros_like(eps, dtype=torch.bool)

    def alpha(self, t: int) -> float:
        """Cosine-annealed step size of step ``t`` (``step_size`` at ``t = 0``)."""
        low = _FINAL_STEP_FRACTION * self.step_size
        return low + (self.step_size - low) * (1 + math.cos(math.pi * t / self.steps)) / 2

    def observe(self, t: int, xa: torch.Tensor, ev: Evaluation) -> tuple[torch.Tensor, torch.Tensor]:
        assert ev.grad is not None
        self.adv = ev.success
        return xa, ev.grad

    def keep(self, mask: torch.Tensor) -> None:
        self.eps, self.cap, self.adv = self.eps[mask], self.cap[mask], self.adv[mask]

    def step(self, t: int, xa: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor,
             threat: ThreatModel) -> torch.Tensor:
        lo, hi = threat.bounds
        with torch.no_grad():
            direction = threat.strategy.normalize_grad(grad)  # unit L2 (zero if grad is zero)
            delta = xa - x0 + self.alpha(t) * direction
            factor = torch.where(self.adv, 1.0 - self.gamma, 1.0 + self.gamma)
            self.eps = torch.minimum(self.eps * factor, self.cap)
            n = _l2(delta)
            scale = torch.where(n > _TINY, self.eps / n.clamp_min(_TINY), torch.zeros_like(n))
            return torch.clamp(x0 + delta * _per_sample(scale, delta), lo, hi)


class DDN(Attack):
    """Decoupled Direction and Norm (Rony et al. 2019), L2 only, targeted or untargeted.

    Per sample, starting from ``delta = 0`` and ``eps_0 = init_norm``, each of
    ``steps`` iterations takes the gradient ``g`` of the cross-entropy at the
    current iterate ``x + delta`` (ascending it untargeted, descending the
    target's cross-entropy targeted), steps ``delta <- delta + alpha_k g / ||g||``
    with ``alpha_k`` cosine-annealed from ``step_size`` to ``0.01 * step_size``,
    sets ``eps_k = (1 - gamma) eps_{k-1}`` if the iterate was adversarial and
    ``(1 + gamma) eps_{k-1}`` otherwise (capped at the largest distance the box
    allows), rescales ``delta`` to norm ``eps_k`` and clips ``x + delta`` to the
    box. The smallest-norm adversarial iterate seen (including the final one,
    checked with one forward pass) is returned; a sample never broken returns
    the clean input with ``success=False``; a sample misclassified already at
    the clean input returns it with distance 0. The attack is unbounded:
    ``threat.eps`` is ignored (the threat model gives the box and must be L2).
    Deterministic: it draws no random numbers (a zero gradient gives a zero step).
    Quantisation of the iterates (the paper's option) is not implemented.

    Built on the engine: the objective ranks iterates by ``(success, -L2)``, the
    step rule holds the per-sample ``eps_k``; ``iterate(..., early_stop=False)``
    since shrinking the norm goes on after the first success.

    Args:
        steps: iterations (gradient evaluations) per sample (the paper: 100 to 1,000).
        init_norm: initial norm ``eps_0``, in input units (the paper's 1 for inputs in [0, 1]).
        gamma: relative change of ``eps`` per iteration, in ``(0, 1)`` (the paper's 0.05).
        step_size: initial (largest) step ``alpha`` of the direction update, in input
            units (the paper's 1 for inputs in [0, 1]).

    Returns:
        :class:`~advlab.attacks.base.AttackResult`: ``passes`` = ``steps``
        forward+backward passes per sample, ``forwards`` = 1 (the final iterate);
        ``info["norm"]`` the per-sample L2 norm of the returned perturbation
        (``inf`` where no adversarial example was found).

    References:
        Rony, Hafemann, Oliveira, Ben Ayed, Sabourin & Granger, "Decoupling
        Direction and Norm for Efficient Gradient-Based L2 Adversarial Attacks
        and Defenses", CVPR 2019 (arXiv:1811.09600), Algorithm 1.
    """

    bounded = False
    steps: int
    init_norm: float
    gamma: float
    step_size: float

    def __init__(self, steps: int = 100, init_norm: float = 1.0, gamma: float = 0.05,
                 step_size: float = 1.0) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        for name in ("init_norm", "step_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        g = self.gamma
        if isinstance(g, bool) or not isinstance(g, int | float) or not 0 < g < 1:
            raise ValueError(f"gamma must be a number in (0, 1), got {g!r}")

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        if threat.norm != "l2":
            raise ValueError(f"DDN is an L2 attack: use ThreatModel('l2', ...), got norm {threat.norm!r}")
        n = x.shape[0]
        lo, hi = threat.bounds
        objective = MinimumNormObjective(criterion, "ce", x, threat.strategy)
        tracker = Tracker(x, objective.initial_keys(n, x))
        cap = _l2(torch.maximum(x - lo, hi - x))  # the farthest point of the box from x
        eps = torch.full((n,), float(self.init_norm), dtype=x.dtype, device=x.device)
        rule = _DecoupledNormStep(torch.minimum(eps, cap), cap, float(self.gamma),
                                  float(self.step_size), self.steps)
        iterate(model, x, objective, threat, rule, tracker, evaluations=self.steps,
                start=x.clone(), early_stop=False, record_start=True, final_forward=True)
        result = tracker.result(x, threat, {})
        result.info["norm"] = torch.where(result.success, result.distance,
                                          torch.full_like(result.distance, float("inf")))
        return result
