"""Add-only JSMA: evade a detector on binary features by only adding features."""

from __future__ import annotations

import math

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int, require_loss, store_settings
from advlab.criteria import Criterion
from advlab.threat import ThreatModel

__all__ = ["AddOnlyJSMA"]


class AddOnlyJSMA(Attack):
    """Greedy saliency attack that may only *add* features, up to an L0 budget.

    The threat model of a spam or malware detector on binary features: the attacker can
    add a word to an email, or a permission or API call to a program, and the email or
    program still works; removing one could break it. Each step computes the gradient of
    the criterion's objective (``loss``) at the current input and switches on, among the
    features still below the upper bound, the ``per_step`` ones whose first-order gain
    ``grad_i * (hi - x_i)`` is largest and positive, setting them to the upper bound
    ``threat.bounds[1]`` (1 for binary features). A sample stops as soon as the criterion
    holds (a spam email classified as ham), or when no addable feature would help, or when
    it has added ``floor(threat.eps)`` features. This is the attack of Grosse et al. (2017)
    on the DREBIN malware detector, itself the Jacobian saliency map attack of Papernot
    et al. (2016) restricted to one direction; with the margin loss on a two-class detector
    the saliency of feature ``i`` is the Jacobian difference ``dF_target/dx_i - dF_source/dx_i``.

    Threat model: ``ThreatModel("l0", k, bounds=(0, 1))`` (``k`` features at most). Features
    are never lowered, so on binary inputs the result is binary and a superset of ``x``.

    Args:
        per_step: features added per gradient step (1 is the papers' greedy choice; more is
            faster on wide feature sets).
        loss: the objective whose gradient ranks the features, ``"cw"`` (logit margin, the
            default), ``"ce"`` or ``"dlr"``.

    Returns:
        :class:`~advlab.attacks.base.AttackResult`; ``distance`` is the number of added
        features, ``passes`` one forward+backward per step, ``info["added"]`` the per-sample
        count.

    References:
        Grosse, Papernot, Manoharan, Backes & McDaniel, "Adversarial Examples for Malware
        Detection", ESORICS 2017 (arXiv:1606.04435). Papernot et al., "The Limitations of Deep
        Learning in Adversarial Settings", EuroS&P 2016 (arXiv:1511.07528).
    """

    norms = ("l0",)

    def __init__(self, per_step: int = 1, loss: str = "cw") -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        require_int("per_step", self.per_step, 1)
        require_loss(self.loss)

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        n = x.shape[0]
        dev = x.device
        hi = threat.bounds[1]
        budget = math.floor(threat.eps)
        x_adv = x.clone()
        flat0 = x.reshape(n, -1)
        passes = torch.zeros(n, dtype=torch.long, device=dev)
        forwards = torch.ones(n, dtype=torch.long, device=dev)  # the clean check
        added = torch.zeros(n, dtype=torch.long, device=dev)
        with torch.no_grad():
            logits = model(x_adv)
        active = (~criterion.is_success(logits)).nonzero().squeeze(1)
        for _ in range(math.ceil(budget / self.per_step) if budget else 0):
            if active.numel() == 0:
                break
            xa = x_adv[active].detach().requires_grad_(True)
            with torch.enable_grad():
                obj = criterion[active].loss(model(xa), self.loss)
                (g,) = torch.autograd.grad(obj.sum(), xa)
            passes[active] += 1
            with torch.no_grad():
                cur = x_adv[active].reshape(len(active), -1)
                gain = g.reshape(len(active), -1) * (hi - cur)
                gain = gain.masked_fill(cur >= hi, float("-inf"))
                room = (budget - added[active]).clamp(max=self.per_step)
                top_gain, top_idx = gain.topk(min(self.per_step, gain.shape[1]), dim=1)
                take = (top_gain > 0) & (torch.arange(top_idx.shape[1], device=dev)[None] < room[:, None])
                stuck = ~take.any(1)
                new = cur.clone()
                rows = torch.arange(len(active), device=dev)[:, None].expand_as(top_idx)
                new[rows[take], top_idx[take]] = hi
                x_adv[active] = new.reshape(xa.shape)
                added[active] += take.sum(1)
                logits_a = model(x_adv[active])
                forwards[active] += 1
                logits[active] = logits_a
                done = criterion[active].is_success(logits_a) | stuck | (added[active] >= budget)
            active = active[~done]
        success = criterion.is_success(logits)
        changed = (x_adv.reshape(n, -1) != flat0).sum(1)
        return AttackResult(x_adv=x_adv, success=success, logits=logits,
                            distance=threat.strategy.distance(x_adv, x), passes=passes,
                            forwards=forwards, info={"added": changed})
