"""DeepFool: the minimal perturbation of the locally linearised classifier."""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks.base import Attack, AttackResult, require_int, store_settings
from advlab.criteria import Criterion
from advlab.threat import ThreatModel

__all__ = ["DeepFool"]

_TINY = 1e-12


class DeepFool(Attack):
    """DeepFool (Moosavi-Dezfooli et al. 2016), L2 or Linf by the threat model's norm.

    At every step the classifier is linearised around the current point; for each
    candidate class ``k`` the distance to the linearised boundary
    ``f_k - f_y = 0`` is ``|f_k - f_y| / ||w_k - w_y||_*`` (dual norm: L2 for
    ``l2``, L1 for ``linf``) and the attack steps onto the closest one. The
    accumulated step is scaled by ``1 + overshoot``. On an affine classifier
    the first step is the exact minimal perturbation. A sample stops as soon as
    it is misclassified. With a targeted criterion only the target class is a
    candidate. The attack is unbounded: ``threat.eps`` is ignored (use a
    bounded attack or :mod:`advlab.evaluation.cascade` to count only
    perturbations inside the ball).

    Args:
        steps: maximum number of linearisation steps.
        overshoot: relative overshoot past the boundary (the paper's 0.02).
        candidates: number of classes considered (the highest logits at the
            clean input, excluding the label); ``None`` means all.

    Returns:
        :class:`~advlab.attacks.base.AttackResult`; ``passes`` counts one
        backward pass per candidate class and step.

    References:
        Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate
        method to fool deep neural networks", CVPR 2016 (arXiv:1511.04599).
    """

    bounded = False

    def __init__(self, steps: int = 50, overshoot: float = 0.02,
                 candidates: int | None = 10) -> None:
        store_settings(self, locals())

    def _check_settings(self) -> None:
        require_int("steps", self.steps, 1)
        if not self.overshoot >= 0:
            raise ValueError(f"overshoot must be >= 0, got {self.overshoot}")
        if self.candidates is not None and (not isinstance(self.candidates, int)
                                            or self.candidates < 1):
            raise ValueError(f"candidates must be an integer >= 1 or None, got {self.candidates!r}")

    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        if threat.norm not in ("l2", "linf"):
            raise ValueError(f"DeepFool supports the l2 and linf norms, got {threat.norm!r}")
        n = x.shape[0]
        dev = x.device
        lo, hi = threat.bounds
        linf = threat.norm == "linf"
        passes = torch.zeros(n, dtype=torch.long, device=dev)
        forwards = torch.full((n,), 2, dtype=torch.long, device=dev)  # clean + final
        with torch.no_grad():
            logits0 = model(x)
        k_all = logits0.shape[1]
        cls = criterion.classes
        if criterion.targeted:
            cand = cls[:, None]  # only the target
            ref = logits0.argmax(1)  # the class to leave: the current prediction
        else:
            masked = logits0.scatter(1, cls[:, None], float("-inf"))
            k = k_all - 1 if self.candidates is None else min(self.candidates, k_all - 1)
            cand = masked.topk(k, dim=1).indices
            ref = cls
        r_tot = torch.zeros_like(x)
        x_adv = x.clone()
        logits = logits0
        active = (~criterion.is_success(logits0)).nonzero().squeeze(1)
        for _ in range(self.steps):
            if active.numel() == 0:
                break
            xa = x_adv[active].detach().requires_grad_(True)
            ca, ra = cand[active], ref[active]
            with torch.enable_grad():
                out = model(xa)
                f_ref = out.gather(1, ra[:, None])
                diffs = out.gather(1, ca) - f_ref  # (m, K'): negative until crossed
                grads = []
                for j in range(ca.shape[1]):
                    (g,) = torch.autograd.grad(diffs[:, j].sum(), xa,
                                               retain_graph=j < ca.shape[1] - 1)
                    grads.append(g)
            passes[active] += ca.shape[1]
            with torch.no_grad():
                gs = torch.stack(grads, 1).flatten(2)  # (m, K', D)
                fd = diffs.detach()
                dual = gs.abs().sum(2) if linf else gs.norm(dim=2)
                dist = (fd.abs() + 1e-4) / (dual + _TINY)
                best = dist.argmin(1)
                g_best = gs[torch.arange(len(active), device=dev), best]
                d_best = dist[torch.arange(len(active), device=dev), best]
                if linf:
                    step = d_best[:, None] * g_best.sign()
                else:
                    step = d_best[:, None] * g_best / (g_best.norm(dim=1, keepdim=True) + _TINY)
                r_tot[active] = r_tot[active] + step.reshape(xa.shape)
                x_new = torch.clamp(x[active] + (1 + self.overshoot) * r_tot[active], lo, hi)
                x_adv[active] = x_new
                logits_new = model(x_new)
                forwards[active] += 1
                done = criterion[active].is_success(logits_new)
            active = active[~done]
        with torch.no_grad():
            logits = model(x_adv)
        success = criterion.is_success(logits)
        return AttackResult(
            x_adv=x_adv,
            success=success,
            logits=logits,
            distance=threat.strategy.distance(x_adv, x),
            passes=passes,
            forwards=forwards,
            info={},
        )
