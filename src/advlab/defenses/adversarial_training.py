"""Adversarial training objectives: Goodfellow's FGSM mix, fast FGSM-RS, PGD-AT and TRADES.

Every objective is a small callable with its settings fixed at construction and
the data given at call time::

    objective = PGDTraining(eps=0.3, steps=7)
    loss, logits, passes = objective(model, x, y, generator)
    loss.backward()

so it works in any training loop, and :func:`advlab.defenses.fit` uses it as
its :class:`~advlab.defenses.trainer.TrainingObjective`. ``passes`` is the number
of forward+backward passes spent per example (inner attack plus the training
pass); forward-only passes are not counted.

The inner maximisation runs on the unwrapped module (``model.module`` of a
``DistributedDataParallel`` wrapper) in eval mode, with gradients taken w.r.t.
the input only (no parameter ``.grad`` is touched); the training loss is then
computed in one forward pass of ``model`` (the wrapper, in train mode) on the
concatenated clean and adversarial batch, so DDP sees exactly one forward per
backward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.base import store_settings
from advlab.attacks.engine import ascend, random_start
from advlab.models.zoo import training_loss
from advlab.threat import ThreatModel, get_norm

__all__ = [
    "unwrap",
    "perturb_fgsm",
    "perturb_pgd",
    "perturb_trades",
    "FGSMTraining",
    "FastFGSMTraining",
    "PGDTraining",
    "TRADES",
]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper (else ``model``)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _check_number(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                  strict_lo: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    if lo is not None and (v <= lo if strict_lo else v < lo):
        raise ValueError(f"{name} must be {'>' if strict_lo else '>='} {lo}, got {value}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")
    return v


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return value


class _EvalOnly:
    """Run the unwrapped module in eval mode for the inner attack, restoring its mode silently."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.was_training = module.training

    def __enter__(self) -> nn.Module:
        self.module.eval()
        return self.module

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


def _training_objective(module: nn.Module, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The summed training loss of ``module`` on labels ``y``, as a function of the logits."""
    return lambda logits: training_loss(module, logits, y) * y.shape[0]


def perturb_fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    step_size: float | None = None,
    random_init: bool = False,
    generator: torch.Generator | None = None,
    init_scale: float = 1.0,
    clip_start: bool = True,
    project: bool = True,
) -> torch.Tensor:
    """One (optionally randomly started) fast-gradient step, projected into the threat model.

    Without random start this is FGSM, ``x + eps * sign(grad)``; with it, FGSM-RS:
    start uniformly in the ball and step ``step_size`` (Wong et al. use ``1.25 eps``).
    Costs one forward+backward pass per example. Does not modify ``x``.

    Args:
        model: classifier returning logits (run as given; wrap in eval mode yourself).
        x: inputs in ``threat.bounds``.
        y: labels.
        threat: norm ball and bounds.
        step_size: absolute step; ``eps`` by default.
        random_init: start at a uniformly drawn point of the ball.
        generator: random source for the start.
        init_scale: radius of the random start in units of ``eps`` (N-FGSM uses 2).
        clip_start: clip the random start to ``threat.bounds`` before taking the
            gradient. Wong et al.'s code does not (the gradient is taken at
            ``x + delta`` even where it leaves [0, 1]); only the returned point must
            lie in the bounds.
        project: project the result into the eps-ball (N-FGSM does not: the
            training point may lie up to ``init_scale * eps + step_size`` away).

    Returns:
        The perturbed inputs (detached), always inside ``threat.bounds``.

    References:
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
        Examples", ICLR 2015 (arXiv:1412.6572).
        Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial
        training", ICLR 2020 (arXiv:2001.03994).
        de Jorge et al., "Make Some Noise: Reliable and Efficient Single-Step
        Adversarial Training", NeurIPS 2022 (arXiv:2202.01181).
    """
    eps = threat.eps
    alpha = eps if step_size is None else float(step_size)
    start = None
    if random_init and eps > 0:
        start = random_start(x, threat, generator, scale=init_scale, clip=clip_start)
    return ascend(model, x, _training_objective(model, y), threat, steps=1, step_size=alpha,
                  start=start, project=project)


def perturb_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float,
    random_init: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on the training loss; returns the last iterate (as Madry et al.).

    Costs ``steps`` forward+backward passes per example. Does not modify ``x``.

    Args:
        model: classifier returning logits.
        x: inputs; y: labels.
        threat: norm ball and bounds.
        steps: gradient steps.
        step_size: absolute step size.
        random_init: start uniformly inside the ball.
        generator: random source for the start.

    Returns:
        The perturbed inputs (detached).

    References:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018 (arXiv:1706.06083).
    """
    start = random_start(x, threat, generator) if random_init and threat.eps > 0 else x.detach().clone()
    return ascend(model, x, _training_objective(model, y), threat, steps=steps, step_size=step_size,
                  start=start)


def _kl(logits_p: torch.Tensor, logits_q: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """``KL(p || q)`` between the softmax distributions of two logit batches."""
    return F.kl_div(F.log_softmax(logits_q, dim=1), F.log_softmax(logits_p, dim=1),
                    reduction=reduction, log_target=True)


def perturb_trades(
    model: nn.Module,
    x: torch.Tensor,
    threat: ThreatModel,
    *,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
    init_std: float = 1e-3,
) -> torch.Tensor:
    """TRADES' inner maximisation: ascend ``KL(f(x) || f(x'))`` from ``x + N(0, init_std^2)``.

    Costs ``steps`` forward+backward passes per example (plus one forward for ``f(x)``).

    References:
        Zhang et al., "Theoretically Principled Trade-off between Robustness and
        Accuracy", ICML 2019 (arXiv:1901.08573).
    """
    lo, hi = threat.bounds
    with torch.no_grad():
        target = model(x)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    start = torch.clamp(x + init_std * noise, lo, hi)
    return ascend(model, x, lambda logits: _kl(target, logits, reduction="sum"), threat,
                  steps=steps, step_size=step_size, start=start)


class _Objective:
    """Shared plumbing: settings, validation, JSON description."""

    name = "objective"

    def validate(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The constructor settings, stored with checkpoints (a resumed run must match)."""
        out: dict[str, Any] = {"defense": self.name}
        for k, v in vars(self).items():
            if not k.startswith("_"):
                out[k] = list(v) if isinstance(v, tuple) else v  # JSON round-trips equal
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"

    def _threat(self) -> ThreatModel:
        return ThreatModel(self.norm, self.eps, tuple(self.bounds))  # type: ignore[attr-defined]


class FGSMTraining(_Objective):
    """Goodfellow et al.'s adversarial objective ``alpha J(x) + (1 - alpha) J(x + eps sign(grad))``.

    Args:
        eps: perturbation size (``>= 0``).
        alpha: weight of the clean loss, in ``[0, 1]``; ``0.5`` in the paper.
            ``alpha = 1`` is clean training (no attack is run).
        norm: ``"linf"`` (FGSM) or another norm (its steepest-ascent step, FGM).
        bounds: valid input range.

    Returns (when called): ``(loss, clean logits, passes per example)``; 3 passes
    (1 attack + clean and adversarial training passes), 1 when ``alpha == 1``.

    References:
        Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
        Examples", ICLR 2015 (arXiv:1412.6572), eq. (7).
    """

    name = "fgsm"

    def __init__(self, eps: float = 0.25, alpha: float = 0.5, norm: str = "linf",
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        store_settings(self, locals())

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` on bad settings."""
        _check_number("eps", self.eps, 0.0)
        _check_number("alpha", self.alpha, 0.0, 1.0)
        get_norm(self.norm)
        self._threat()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        self.validate()
        alpha = float(self.alpha)
        if alpha == 1.0:
            logits = model(x)
            return training_loss(model, logits, y), logits, 1
        with _EvalOnly(unwrap(model)) as inner:
            x_adv = perturb_fgsm(inner, x, y, self._threat())
        if alpha == 0.0:
            logits = model(x_adv)
            return training_loss(model, logits, y), logits, 2
        n = x.shape[0]
        logits = model(torch.cat([x, x_adv]))
        loss = (alpha * training_loss(model, logits[:n], y)
                + (1 - alpha) * training_loss(model, logits[n:], y))
        return loss, logits[:n], 3


class FastFGSMTraining(_Objective):
    """Fast adversarial training: FGSM from a random start, trained on the result only.

    Args:
        eps: perturbation size.
        step_size: FGSM step; ``1.25 * eps`` by default (Wong et al.).
        norm: threat-model norm.
        bounds: valid input range.
        clip_start: clip the random start to ``bounds`` before taking the gradient.
            Off by default, as in Wong et al.'s code: on MNIST, where most pixels are 0,
            clipping halves the noise on the background and the run falls into
            catastrophic overfitting (measured: docs/defenses.md).
        init_scale: random-start radius in units of ``eps`` (1 for FGSM-RS).
        project: project the training point into the eps-ball (True for FGSM-RS).
            ``init_scale=2, step_size=eps, project=False`` is N-FGSM (de Jorge et al.).

    Pair it with a cyclic learning rate (``TrainConfig(lr_schedule="cyclic")``), as the
    paper does. Returns ``(loss, adversarial logits, 2)`` (1 attack + 1 training pass).

    References:
        Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial
        training", ICLR 2020 (arXiv:2001.03994).
        de Jorge et al., "Make Some Noise: Reliable and Efficient Single-Step
        Adversarial Training", NeurIPS 2022 (arXiv:2202.01181).
    """

    name = "fgsm-rs"

    def __init__(self, eps: float = 0.3, step_size: float | None = None, norm: str = "linf",
                 bounds: tuple[float, float] = (0.0, 1.0), clip_start: bool = False,
                 init_scale: float = 1.0, project: bool = True) -> None:
        store_settings(self, locals())

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` on bad settings."""
        _check_number("eps", self.eps, 0.0)
        if self.step_size is not None:
            _check_number("step_size", self.step_size, 0.0)
        _check_number("init_scale", self.init_scale, 0.0)
        for k in ("clip_start", "project"):
            if not isinstance(getattr(self, k), bool):
                raise TypeError(f"{k} must be a bool, got {getattr(self, k)!r}")
        get_norm(self.norm)
        self._threat()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        self.validate()
        step = 1.25 * float(self.eps) if self.step_size is None else float(self.step_size)
        with _EvalOnly(unwrap(model)) as inner:
            x_adv = perturb_fgsm(inner, x, y, self._threat(), step_size=step, random_init=True,
                                 generator=generator, init_scale=float(self.init_scale),
                                 clip_start=self.clip_start, project=self.project)
        logits = model(x_adv)
        return training_loss(model, logits, y), logits, 2


class PGDTraining(_Objective):
    """PGD adversarial training: minimise the loss at the PGD maximiser.

    Args:
        eps: perturbation size.
        steps: PGD steps (``>= 1``).
        step_size: absolute step; ``2.5 * eps / steps`` by default.
        random_init: start uniformly inside the ball (Madry et al.).
        norm: threat-model norm.
        bounds: valid input range.

    Returns ``(loss, adversarial logits, steps + 1)``.

    References:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018 (arXiv:1706.06083).
    """

    name = "pgd"

    def __init__(self, eps: float = 0.3, steps: int = 7, step_size: float | None = None,
                 random_init: bool = True, norm: str = "linf",
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        store_settings(self, locals())

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` on bad settings."""
        _check_number("eps", self.eps, 0.0)
        _check_int("steps", self.steps, 1)
        if self.step_size is not None:
            _check_number("step_size", self.step_size, 0.0)
        get_norm(self.norm)
        self._threat()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        self.validate()
        # Madry et al.'s 2.5 eps / steps, uncapped and in this order (the attacks' rule,
        # engine.default_step_size, caps at eps and rounds as (2.5 / steps) * eps)
        step = (2.5 * float(self.eps) / self.steps if self.step_size is None
                else float(self.step_size))
        with _EvalOnly(unwrap(model)) as inner:
            x_adv = perturb_pgd(inner, x, y, self._threat(), steps=self.steps, step_size=step,
                                random_init=self.random_init, generator=generator)
        logits = model(x_adv)
        return training_loss(model, logits, y), logits, self.steps + 1


class TRADES(_Objective):
    """TRADES: ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` with ``x'`` maximising the KL term.

    Args:
        eps: perturbation size.
        beta: robustness weight (``>= 0``; 6 in the paper, ``0`` is clean training).
        steps: inner steps (10 in the paper).
        step_size: absolute step; ``eps / 4`` by default, which suits 10 steps (the paper
            uses 0.01 with 40 steps at eps 0.3 on MNIST, 0.007 with 10 steps at eps 0.031 on
            CIFAR-10).
        norm: threat-model norm.
        bounds: valid input range.

    Returns ``(loss, clean logits, steps + 2)``; ``(loss, logits, 1)`` when ``beta == 0``.

    References:
        Zhang et al., "Theoretically Principled Trade-off between Robustness and
        Accuracy", ICML 2019 (arXiv:1901.08573).
    """

    name = "trades"

    def __init__(self, eps: float = 0.3, beta: float = 6.0, steps: int = 10,
                 step_size: float | None = None, norm: str = "linf",
                 bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        store_settings(self, locals())

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` on bad settings."""
        _check_number("eps", self.eps, 0.0)
        _check_number("beta", self.beta, 0.0)
        _check_int("steps", self.steps, 1)
        if self.step_size is not None:
            _check_number("step_size", self.step_size, 0.0)
        get_norm(self.norm)
        self._threat()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        self.validate()
        beta = float(self.beta)
        if beta == 0.0:
            logits = model(x)
            return training_loss(model, logits, y), logits, 1
        step = float(self.eps) / 4 if self.step_size is None else float(self.step_size)
        with _EvalOnly(unwrap(model)) as inner:
            x_adv = perturb_trades(inner, x, self._threat(), steps=self.steps, step_size=step,
                                   generator=generator)
        n = x.shape[0]
        logits = model(torch.cat([x, x_adv]))
        nat, adv = logits[:n], logits[n:]
        loss = training_loss(model, nat, y) + beta * _kl(nat, adv)
        return loss, nat, self.steps + 2
