"""Adversarial attacks on policies (Huang et al. 2017): perturb every observation.

At every step the adversary sees the observation, computes a perturbation of
norm ``eps`` and the agent acts on the perturbed observation. Three
adversaries:

* ``"fgsm"``: one fast-gradient step (Goodfellow et al. 2014) that lowers the
  softmax probability of the action the policy prefers, i.e. raises the
  cross-entropy between the policy's output (Q-values read as logits, as Huang
  et al. do for DQN) and its own preferred action. Under L1 the whole budget
  goes to the single most sensitive feature, under L2 along the gradient,
  under Linf along its sign.
* ``"noise"``: a random perturbation of exactly the same norm (random signs
  under Linf, a random direction under L2, one random feature under L1).
* transfer: ``"fgsm"`` computed on a second, independently trained policy (the
  adversary's copy) and applied to the attacked one (black box).

CartPole observations are unbounded (cart velocity and pole angular velocity
have no limits), so the threat model has no box constraint and ``eps`` is
measured per feature in units of ``scale`` (by default the standard deviation
of that feature along the attacked policy's own clean trajectories): the
adversary perturbs ``obs / scale``. ``eps = 0.1`` under Linf moves every
feature by a tenth of its typical variation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from advlab.attacks.pgd import FGSM
from advlab.criteria import Misclassification
from advlab.rl.episodes import EpisodeStats, Perturbation, rollout
from advlab.threat import ThreatModel, get_norm

__all__ = ["ScaledPolicy", "ObservationAttack", "random_perturbation", "ReturnCurve",
           "return_vs_eps"]

UNBOUNDED = (-math.inf, math.inf)


class ScaledPolicy(nn.Module):
    """``policy`` seen in scaled coordinates ``z = obs / scale`` (the attack's space)."""

    def __init__(self, policy: nn.Module, scale: torch.Tensor) -> None:
        super().__init__()
        self.policy = policy
        self.scale: torch.Tensor
        self.register_buffer("scale", scale.detach().clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.policy(z * self.scale)
        return out


def random_perturbation(shape: torch.Size | tuple[int, ...], norm: str, eps: float,
                        generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random perturbations of norm exactly ``eps`` (per row of a ``(N, d)`` batch).

    Linf: ``eps`` times random signs; L2: ``eps`` times a uniformly random unit
    direction; L1: ``+-eps`` on one uniformly chosen feature (the same sparsity
    as the FGSM step under L1).
    """
    key = get_norm(norm).name
    n, d = shape[0], math.prod(shape[1:])
    if key == "linf":
        s = torch.randint(0, 2, (n, d), generator=generator).to(dtype) * 2 - 1
        out = eps * s
    elif key == "l2":
        gdir = torch.randn((n, d), generator=generator, dtype=dtype)
        out = eps * gdir / gdir.norm(dim=1, keepdim=True).clamp_min(1e-12)
    else:
        j = torch.randint(0, d, (n,), generator=generator)
        s = torch.randint(0, 2, (n,), generator=generator).to(dtype) * 2 - 1
        out = torch.zeros((n, d), dtype=dtype)
        out[torch.arange(n), j] = eps * s
    return out.reshape(shape)


@dataclass
class ObservationAttack:
    """Settings of a per-step observation adversary.

    Args:
        kind: ``"fgsm"`` (gradient step lowering the preferred action) or
            ``"noise"`` (random perturbation of the same norm).
        norm: ``"linf" | "l2" | "l1"``.
        eps: budget in units of ``scale`` (``>= 0``).
    """

    kind: str = "fgsm"
    norm: str = "linf"
    eps: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in ("fgsm", "noise"):
            raise ValueError(f"kind must be 'fgsm' or 'noise', got {self.kind!r}")
        self.norm = get_norm(self.norm).name
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not (
                math.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eps must be a finite number >= 0, got {self.eps!r}")
        self.eps = float(self.eps)

    def perturbation(self, target: nn.Module, scale: torch.Tensor, *,
                     source: nn.Module | None = None,
                     generator: torch.Generator | None = None) -> Perturbation:
        """The function applied to every observation batch during a rollout.

        Args:
            target: the attacked policy (its preferred action defines success).
            scale: per-feature unit of ``eps`` (positive, shape ``(d,)``).
            source: policy the gradient is computed on (default ``target``);
                with another policy this is the black-box transfer setting, and
                the adversary lowers the *source's* preferred action.
            generator: randomness of ``"noise"``.
        """
        if not isinstance(scale, torch.Tensor) or scale.ndim != 1 or not bool((scale > 0).all()):
            raise ValueError("scale must be a 1-D tensor of positive per-feature units")
        grad_model = ScaledPolicy(source if source is not None else target, scale)
        grad_model.training = False  # the wrapper only; the wrapped policy's mode is left alone
        threat = ThreatModel(self.norm, self.eps, UNBOUNDED)
        fgsm = FGSM()

        def perturb(obs: torch.Tensor) -> torch.Tensor:
            if self.eps == 0:
                return obs.clone()
            if self.kind == "noise":
                delta = random_perturbation(obs.shape, self.norm, self.eps, generator, obs.dtype)
                return obs + delta * scale
            z = obs / scale
            with torch.no_grad():
                preferred = grad_model(z).argmax(1)
            r = fgsm(grad_model, z, Misclassification(preferred), threat=threat)
            return r.x_adv * scale

        return perturb


@dataclass
class ReturnCurve:
    """Mean episode return vs eps for the attack, the noise baseline and transfer.

    Attributes:
        norm: the norm.
        eps: budgets.
        attack, noise, transfer: :class:`EpisodeStats` per eps (``transfer``
            empty without a source policy).
        clean: the unperturbed episodes.
    """

    norm: str
    eps: list[float]
    clean: EpisodeStats
    attack: list[EpisodeStats]
    noise: list[EpisodeStats]
    transfer: list[EpisodeStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def col(stats: list[EpisodeStats], attr: str) -> list[float]:
            return [getattr(s, attr) for s in stats]

        out: dict[str, Any] = {"norm": self.norm, "eps": self.eps,
                               "clean_return": self.clean.mean_return,
                               "attack_return": col(self.attack, "mean_return"),
                               "attack_changed": col(self.attack, "changed_share"),
                               "noise_return": col(self.noise, "mean_return"),
                               "noise_changed": col(self.noise, "changed_share")}
        if self.transfer:
            out["transfer_return"] = col(self.transfer, "mean_return")
            out["transfer_changed"] = col(self.transfer, "changed_share")
        return out


def return_vs_eps(policy: nn.Module, env: str, seeds: Sequence[int], eps: Sequence[float], *,
                  norm: str = "linf", scale: torch.Tensor, source: nn.Module | None = None,
                  generator: torch.Generator | None = None,
                  max_steps: int | None = None) -> ReturnCurve:
    """Mean return over seeded episodes as the per-step budget grows (Huang et al. 2017, fig. 2).

    Args:
        policy: the attacked policy (observations -> action scores).
        env: environment name or gymnasium id.
        seeds: one episode per seed, the same for every eps and adversary.
        eps: budgets in units of ``scale``.
        norm: ``"linf" | "l2" | "l1"``.
        scale: per-feature unit of eps (see :class:`ObservationAttack`).
        source: an independently trained policy for the transfer (black-box) curve.
        generator: randomness of the noise baseline.
        max_steps: cap on the steps of each episode.

    Returns:
        the :class:`ReturnCurve`.

    References:
        Huang, Papernot, Goodfellow, Duan & Abbeel, "Adversarial Attacks on
        Neural Network Policies", arXiv:1702.02284, 2017.
    """
    eps = [float(e) for e in eps]
    clean = rollout(policy, env, seeds, max_steps=max_steps)
    att, noi, tra = [], [], []
    for e in eps:
        att.append(rollout(policy, env, seeds, max_steps=max_steps,
                           perturb=ObservationAttack("fgsm", norm, e).perturbation(policy, scale)))
        noi.append(rollout(policy, env, seeds, max_steps=max_steps,
                           perturb=ObservationAttack("noise", norm, e).perturbation(
                               policy, scale, generator=generator)))
        if source is not None:
            tra.append(rollout(policy, env, seeds, max_steps=max_steps,
                               perturb=ObservationAttack("fgsm", norm, e).perturbation(
                                   policy, scale, source=source)))
    return ReturnCurve(norm=get_norm(norm).name, eps=eps, clean=clean, attack=att, noise=noi,
                       transfer=tra)
