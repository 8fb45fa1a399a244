"""The iteration engine: one loop for every iterative gradient attack.

Every iterative attack in advlab (FGSM, BIM, PGD, MI-FGSM, APGD, APGD-T, EOT,
ILLC) is a configuration of :func:`iterate`:

* an :class:`Objective` evaluates a batch of iterates: logits, the per-sample
  objective to ascend, its gradient w.r.t. the input, whether the criterion
  holds, and the ranking keys of the iterate;
* a :class:`StepRule` turns the gradient into the next iterate (steepest
  ascent in the threat model's norm, momentum, APGD's step-size schedule; the
  rule may also keep per-sample state and restart from a better point);
* a :class:`Tracker` owns the per-sample bookkeeping the loops used to repeat:
  the best iterate (successful first, then highest objective), the shrinking
  active set on early stop, restarts on unbroken samples only, and the
  forward/backward pass counts.

Adversarial training and the FGSM accuracy-vs-eps curve use the lean entry
point :func:`ascend` (last iterate, no validation, no bookkeeping) with the
same step and the same input-gradient helper :func:`input_grad`.

References:
    The design follows Foolbox 3's gradient-descent base (Rauber et al.,
    "Foolbox Native", JOSS 2020): one loop, norm behaviour and step as hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from advlab.attacks.base import AttackResult
from advlab.criteria import Criterion
from advlab.threat import Norm, ThreatModel

__all__ = [
    "input_grad",
    "default_step_size",
    "random_start",
    "steepest_step",
    "ascend",
    "Evaluation",
    "Objective",
    "LossObjective",
    "MinimumNormObjective",
    "StepRule",
    "SteepestAscent",
    "Tracker",
    "iterate",
    "run_restarts",
]


# ----------------------------------------------------------------------------- pieces


def input_grad(
    model: nn.Module, x: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, objective and the gradient of ``objective(logits).sum()`` w.r.t. ``x`` only.

    The one input-gradient helper of advlab: ``torch.autograd.grad`` on a
    detached copy of the input, so parameter ``.grad`` is never touched and
    ``x`` is never modified. Returns detached ``(logits, objective, grad)``.
    """
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xg)
        obj = objective(logits)
        (grad,) = torch.autograd.grad(obj.sum(), xg)
    return logits.detach(), obj.detach(), grad


def default_step_size(eps: float, steps: int, step_size: float | None = None,
                      rel_step_size: float | None = None) -> float:
    """The absolute step: ``step_size``, else ``rel_step_size * eps``, else ``min(1, 2.5 / steps) * eps``.

    ``2.5 / steps`` is Madry et al.'s rule: the iterates can travel 2.5 times
    the radius, enough to reach the boundary of the ball from any start.
    """
    if step_size is not None:
        return float(step_size)
    rel = rel_step_size if rel_step_size is not None else min(1.0, 2.5 / steps)
    return float(rel) * eps


def random_start(x: torch.Tensor, threat: ThreatModel, generator: torch.Generator | None, *,
                 scale: float = 1.0, clip: bool = True) -> torch.Tensor:
    """``x`` plus a point drawn uniformly from the ball of radius ``scale * eps`` (clipped to the box)."""
    delta = threat.strategy.random_init(x.shape, scale * threat.eps, generator=generator,
                                        device=x.device, dtype=x.dtype)
    lo, hi = threat.bounds
    return torch.clamp(x + delta, lo, hi) if clip else x + delta


def steepest_step(xa: torch.Tensor, x0: torch.Tensor, direction: torch.Tensor, alpha: float | torch.Tensor,
                  threat: ThreatModel, project: bool = True) -> torch.Tensor:
    """``x0 + P(xa + alpha * normalize(direction) - x0)`` clipped to the box (no autograd).

    ``normalize`` is the norm's steepest-ascent direction (sign for Linf, unit
    L2 vector, sparse top-k for L1); ``P`` the projection onto the ball
    (skipped with ``project=False``).
    """
    norm = threat.strategy
    lo, hi = threat.bounds
    with torch.no_grad():
        xa = xa + alpha * norm.normalize_grad(direction)
        delta = norm.project(xa - x0, threat.eps) if project else xa - x0
        return torch.clamp(x0 + delta, lo, hi)


def ascend(model: nn.Module, x: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor],
           threat: ThreatModel, *, steps: int, step_size: float, start: torch.Tensor | None = None,
           project: bool = True) -> torch.Tensor:
    """The lean entry point: ``steps`` steepest-ascent steps on ``objective``; the last iterate.

    For training-time perturbations (FGSM, FGSM-RS, PGD-AT, TRADES' inner loop):
    no validation, no best iterate, no pass counting; ``model`` is run as given
    (put it in eval mode yourself). ``start`` defaults to ``x``. Costs ``steps``
    forward+backward passes per example. Returns a detached tensor.
    """
    xa = x.detach() if start is None else start
    for _ in range(steps):
        _, _, grad = input_grad(model, xa, objective)
        xa = steepest_step(xa, x, grad, step_size, threat, project)
    return xa.detach()


# ----------------------------------------------------------------------------- objectives


@dataclass
class Evaluation:
    """One evaluation of a batch of iterates.

    Attributes:
        logits: logits to keep with the best iterate (``None``: the objective keeps none).
        obj: per-sample objective being ascended.
        grad: its gradient w.r.t. the input (``None`` for a forward-only evaluation).
        success: per-sample criterion (drives early stop).
        keys: ranking keys of the iterate, compared lexicographically (higher is better).
    """

    logits: torch.Tensor | None
    obj: torch.Tensor
    grad: torch.Tensor | None
    success: torch.Tensor
    keys: tuple[torch.Tensor, ...]


class Objective(Protocol):
    """What :func:`iterate` ascends; sliced with the active set."""

    #: forward+backward passes per sample and gradient evaluation
    cost: int

    def evaluate(self, model: nn.Module, xa: torch.Tensor, grad: bool) -> Evaluation: ...

    def initial_keys(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]: ...

    def subset(self, idx: torch.Tensor) -> Objective: ...


class LossObjective:
    """A loss of the logits under a criterion; success and score under a (possibly other) criterion.

    Args:
        criterion: the criterion whose ``loss(logits, kind)`` is ascended.
        kind: ``"ce" | "cw" | "dlr"``.
        success_criterion: decides success and, with ``score_kind``, the score of
            an iterate (default: ``criterion``; APGD-T ascends a targeted loss but
            ranks iterates by the untargeted criterion).
        score_kind: loss kind of the score under ``success_criterion``; ``None``
            means the ascended objective itself.
    """

    cost = 1

    def __init__(self, criterion: Criterion, kind: str, success_criterion: Criterion | None = None,
                 score_kind: str | None = None) -> None:
        self.criterion = criterion
        self.kind = kind
        self.success_criterion = success_criterion
        self.score_kind = score_kind

    def evaluate(self, model: nn.Module, xa: torch.Tensor, grad: bool) -> Evaluation:
        crit = self.criterion
        if grad:
            logits, obj, g = input_grad(model, xa, lambda z: crit.loss(z, self.kind))
        else:
            with torch.no_grad():
                logits = model(xa)
            obj, g = crit.loss(logits, self.kind), None
        sc = self.success_criterion or crit
        succ = sc.is_success(logits)
        score = obj if self.score_kind is None else sc.loss(logits, self.score_kind)
        return Evaluation(logits, obj, g, succ, (succ, score))

    def initial_keys(self, n: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(n, dtype=torch.bool, device=like.device),
                torch.full((n,), float("-inf"), dtype=like.dtype, device=like.device))

    def subset(self, idx: torch.Tensor) -> LossObjective:
        sc = self.success_criterion
        return LossObjective(self.criterion[idx], self.kind, None if sc is None else sc[idx],
                             self.score_kind)


class MinimumNormObjective(LossObjective):
    """A loss to ascend, with iterates ranked for a minimum-norm attack (FMN, DDN).

    The keys are ``(success, -distance to x0)`` in the threat model's norm: the
    tracker keeps the adversarial iterate of smallest norm and, while there is
    none, the clean start (its key ``(False, -inf)`` is never beaten by a failure).

    Args:
        criterion: success test and the loss's criterion.
        kind: ``"ce" | "cw" | "dlr"`` (DDN ascends the cross-entropy, FMN the logit margin).
        x0: the clean inputs of the batch.
        norm: the threat model's norm strategy (measures the distance).
    """

    def __init__(self, criterion: Criterion, kind: str, x0: torch.Tensor, norm: Norm) -> None:
        super().__init__(criterion, kind)
        self.x0 = x0
        self.norm = norm

    def evaluate(self, model: nn.Module, xa: torch.Tensor, grad: bool) -> Evaluation:
        ev = super().evaluate(model, xa, grad)
        ev.keys = (ev.success, -self.norm.distance(xa, self.x0))
        return ev

    def subset(self, idx: torch.Tensor) -> MinimumNormObjective:
        return MinimumNormObjective(self.criterion[idx], self.kind, self.x0[idx], self.norm)


# ----------------------------------------------------------------------------- step rules


class StepRule:
    """Turns a gradient into the next iterate; may keep per-sample state.

    The engine calls :meth:`observe` after every evaluation (the rule may move
    the iterate, e.g. APGD's restart from its best point), :meth:`keep` when
    the active set shrinks, and :meth:`step` to make the next iterate.
    A rule instance serves one run; :func:`iterate` takes a fresh one per run.
    """

    def observe(self, t: int, xa: torch.Tensor, ev: Evaluation) -> tuple[torch.Tensor, torch.Tensor]:
        """After evaluation ``t``; returns the (possibly replaced) iterate and gradient."""
        assert ev.grad is not None
        return xa, ev.grad

    def keep(self, mask: torch.Tensor) -> None:
        """Drop the state of samples leaving the active set."""

    def step(self, t: int, xa: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor,
             threat: ThreatModel) -> torch.Tensor:
        raise NotImplementedError


class SteepestAscent(StepRule):
    """``x <- P(x + alpha * normalize(grad))``, with an optional per-step schedule of ``alpha``."""

    def __init__(self, alpha: float, schedule: Callable[[int], float] | None = None) -> None:
        self.alpha = alpha
        self.schedule = schedule

    def step(self, t: int, xa: torch.Tensor, x0: torch.Tensor, grad: torch.Tensor,
             threat: ThreatModel) -> torch.Tensor:
        a = self.alpha if self.schedule is None else self.schedule(t)
        return steepest_step(xa, x0, grad, a, threat)


# ----------------------------------------------------------------------------- bookkeeping


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def _better(new: Sequence[torch.Tensor], old: Sequence[torch.Tensor]) -> torch.Tensor:
    """Lexicographic ``new > old`` per sample (ties keep the old one)."""
    better = new[0] > old[0]
    tie = new[0] == old[0]
    for a, b in zip(new[1:], old[1:], strict=True):
        better = better | (tie & (a > b))
        tie = tie & (a == b)
    return better


class Tracker:
    """Per-sample best iterate and pass counts over all runs of an attack on one batch.

    ``keys`` rank iterates lexicographically (for a loss objective: success,
    then objective); ``success`` is the first key. With ``keep="last"`` every
    recorded iterate replaces the stored one (MI-FGSM's transfer setting).
    """

    def __init__(self, x: torch.Tensor, keys: tuple[torch.Tensor, ...], keep: str = "best") -> None:
        if keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
        self.keep = keep
        n = x.shape[0]
        self.x = x.clone()
        self.keys = [k.clone() for k in keys]
        self.logits: torch.Tensor | None = None
        self.passes = torch.zeros(n, dtype=torch.long, device=x.device)
        self.forwards = torch.zeros(n, dtype=torch.long, device=x.device)

    @property
    def success(self) -> torch.Tensor:
        return self.keys[0]

    def record(self, idx: torch.Tensor | None, xa: torch.Tensor, ev: Evaluation) -> None:
        """Keep the better of the stored and the current iterate per sample.

        ``idx is None`` means every sample is active in original order: then the
        update is done in place with masks instead of gathers and scatters.
        """
        n = self.x.shape[0]
        if ev.logits is not None and self.logits is None:
            self.logits = ev.logits.new_full((n, ev.logits.shape[1]), float("nan"))
        if self.keep == "last":
            sel = torch.arange(n, device=xa.device) if idx is None else idx
            self.x[sel] = xa
            for k, new in zip(self.keys, ev.keys, strict=True):
                k[sel] = new
            if ev.logits is not None and self.logits is not None:
                self.logits[sel] = ev.logits
            return
        if idx is None:
            better = _better(ev.keys, self.keys)
            self.x.copy_(torch.where(_bcast(better, xa), xa, self.x))
            if ev.logits is not None and self.logits is not None:
                self.logits.copy_(torch.where(better[:, None], ev.logits, self.logits))
            for k, new in zip(self.keys, ev.keys, strict=True):
                k.copy_(torch.where(better, new, k))
            return
        better = _better(ev.keys, [k[idx] for k in self.keys])
        upd = idx[better]
        self.x[upd] = xa[better]
        for k, new in zip(self.keys, ev.keys, strict=True):
            k[upd] = new[better]
        if ev.logits is not None and self.logits is not None:
            self.logits[upd] = ev.logits[better]

    def result(self, x: torch.Tensor, threat: ThreatModel, info: dict[str, object]) -> AttackResult:
        """The best iterates as an :class:`~advlab.attacks.base.AttackResult` (``x``: clean batch)."""
        logits = self.logits if self.logits is not None else x.new_zeros((x.shape[0], 0))
        return AttackResult(x_adv=self.x, success=self.success, logits=logits,
                            distance=threat.strategy.distance(self.x, x), passes=self.passes,
                            forwards=self.forwards, info=dict(info))


# ----------------------------------------------------------------------------- the loop


def iterate(
    model: nn.Module,
    x0: torch.Tensor,
    objective: Objective,
    threat: ThreatModel,
    rule: StepRule,
    tracker: Tracker,
    *,
    evaluations: int,
    start: torch.Tensor,
    idx: torch.Tensor | None = None,
    early_stop: bool = False,
    record_start: bool = True,
    final_forward: bool = True,
) -> None:
    """One run of an iterative attack on the samples ``idx`` of the tracker's batch.

    Per evaluation ``t``: evaluate the objective and its gradient at the
    iterate, record it (the start is a candidate only with ``record_start``;
    under early stop an already successful start is recorded anyway), let the
    rule observe it, drop successful samples (``early_stop``), and step. With
    ``final_forward`` the iterate after the last step is evaluated forward-only
    and recorded; otherwise the last evaluation takes no step.

    Args:
        x0: the clean inputs of the active samples (``tracker.x[idx]`` at the start).
        idx: positions of ``x0`` in the tracker's batch; ``None`` means all, in order.
        evaluations: gradient evaluations (forward+backward passes, times
            ``objective.cost``) per sample.
        start: the first iterate.
    """
    all_active = idx is None
    if idx is None:
        idx = torch.arange(x0.shape[0], device=x0.device)
    xa = start
    spent = 0  # passes spent by every sample of the current active set
    cost = objective.cost
    for t in range(evaluations):
        ev = objective.evaluate(model, xa, True)
        spent += cost
        if t > 0 or record_start:
            tracker.record(None if all_active else idx, xa, ev)
        elif early_stop and bool(ev.success.any()):
            hit = ev.success.nonzero().squeeze(1)
            tracker.record(idx[hit], xa[hit], _take(ev, hit))
        xa, grad = rule.observe(t, xa, ev)
        succ = ev.success
        if early_stop and bool(succ.any()):
            tracker.passes[idx] += spent
            spent = 0
            keep = ~succ
            idx, xa, x0, grad = idx[keep], xa[keep], x0[keep], grad[keep]
            objective = objective.subset(keep.nonzero().squeeze(1))
            rule.keep(keep)
            all_active = False
            if idx.numel() == 0:
                return
        if final_forward or t < evaluations - 1:
            xa = rule.step(t, xa, x0, grad, threat)
    if spent:
        tracker.passes[idx] += spent
    if final_forward and idx.numel():
        ev = objective.evaluate(model, xa, False)
        tracker.forwards[idx] += cost
        tracker.record(None if all_active else idx, xa, ev)


def _take(ev: Evaluation, i: torch.Tensor) -> Evaluation:
    return Evaluation(None if ev.logits is None else ev.logits[i], ev.obj[i],
                      None if ev.grad is None else ev.grad[i], ev.success[i],
                      tuple(k[i] for k in ev.keys))


def run_restarts(
    restarts: int,
    tracker: Tracker,
    x: torch.Tensor,
    run: Callable[[torch.Tensor | None, int], None],
) -> None:
    """Call ``run(idx, r)`` for ``r < restarts``: all samples first, then only unbroken ones.

    ``idx is None`` on the first run (every sample, in order); later runs get
    the positions of the samples not yet successful, and stop once none is left.
    """
    for r in range(restarts):
        if r == 0:
            run(None, 0)
            continue
        idx = (~tracker.success).nonzero().squeeze(1)
        if idx.numel() == 0:
            return
        run(idx, r)
