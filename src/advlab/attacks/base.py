"""The attack template: validation, batching and per-sample bookkeeping.

Subclasses implement :meth:`Attack._run` on one batch; the base class checks
inputs, splits into batches, runs the model in eval mode (restoring its mode),
never touches parameter ``.grad`` and never modifies the input in place.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from advlab.criteria import Criterion, as_criterion
from advlab.losses import LOSSES
from advlab.threat import ThreatModel
from advlab.validation import check_inputs, check_logits, eval_mode

#: seed of the private generator an attack uses when it is given none
DEFAULT_SEED = 0

__all__ = ["Attack", "AttackResult", "DEFAULT_SEED", "constructor_settings", "store_settings",
           "require_int", "require_loss", "require_step"]


@dataclass
class AttackResult:
    """Outcome of an attack on a batch.

    Attributes:
        x_adv: adversarial inputs (best iterate per sample), same shape as ``x``.
        success: boolean per sample: the criterion holds at ``x_adv``.
        logits: model logits at ``x_adv``.
        distance: per-sample distance ``||x_adv - x||`` in the threat model's norm.
        passes: per-sample number of forward+backward passes spent.
        forwards: per-sample number of forward-only passes (evaluation of iterates).
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    logits: torch.Tensor
    distance: torch.Tensor
    passes: torch.Tensor
    forwards: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        n = self.success.numel()
        return float(self.success.float().mean()) if n else math.nan

    @staticmethod
    def cat(parts: list[AttackResult]) -> AttackResult:
        """Concatenate per-batch results; per-sample ``info`` tensors are concatenated too.

        An ``info`` entry is per-sample when it is a tensor whose first dimension is
        the batch size in every part (CW's ``l2``, ILLC's ``targets``, EOT's
        ``expected_success``); other entries (scalars, settings) are taken from the
        first part.
        """
        kwargs: dict[str, Any] = {}
        for f in fields(AttackResult):
            if f.name == "info":
                continue
            kwargs[f.name] = torch.cat([getattr(p, f.name) for p in parts])
        info: dict[str, Any] = dict(parts[0].info) if parts else {}
        for key, value in info.items():
            if all(_per_sample(p.info.get(key), p.success.numel()) for p in parts):
                info[key] = torch.cat([p.info[key] for p in parts])
            elif isinstance(value, torch.Tensor) and len(parts) > 1:
                info[key] = value.clone()
        kwargs["info"] = info
        return AttackResult(**kwargs)


def _per_sample(value: object, n: int) -> bool:
    return isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == n


def store_settings(obj: object, values: dict[str, Any]) -> None:
    """Store a constructor's parameters on ``obj`` under their own names.

    Call it first in ``__init__`` as ``store_settings(self, locals())``: settings at
    construction, no logic there (scikit-learn's rule); validation happens at call time.
    """
    for name, value in values.items():
        if name not in ("self", "__class__"):
            setattr(obj, name, value)


def constructor_settings(obj: object) -> dict[str, Any]:
    """The constructor's parameters and their current values (scikit-learn's ``get_params`` rule).

    Every parameter of ``type(obj).__init__`` must be stored on the object under
    its own name; a missing one is a bug in the class and raises ``AttributeError``.
    """
    params = inspect.signature(type(obj).__init__).parameters
    return {name: getattr(obj, name) for name, p in params.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


class Attack(ABC):
    """Base class: settings at construction, data at call time.

    ``attack(model, x, criterion, threat=ThreatModel("linf", 0.3))`` returns an
    :class:`AttackResult`. ``criterion`` is a :class:`~advlab.criteria.Criterion`
    or a label tensor. Random draws come from ``generator``; without one, from a
    private generator seeded with :data:`DEFAULT_SEED` (the global RNG is never used),
    so two calls without a generator give the same answer.
    """

    #: whether the attack is restricted to a norm ball (minimal-perturbation attacks are not)
    bounded: bool = True
    #: the threat-model norms the attack takes; any other is refused with a one-line error
    #: (the L0 budget of discrete feature attacks is not a ball the gradient attacks step in)
    norms: tuple[str, ...] = ("linf", "l2", "l1")

    def settings(self) -> dict[str, Any]:
        """The constructor settings (from its signature), for JSON results: exactly what ran."""
        return {"attack": type(self).__name__, **constructor_settings(self)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in constructor_settings(self).items())
        return f"{type(self).__name__}({args})"

    def _check_settings(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Raise ``ValueError``/``TypeError`` on bad settings (called once per attack call)."""

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        criterion: Criterion | torch.Tensor,
        *,
        threat: ThreatModel,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
    ) -> AttackResult:
        if not isinstance(threat, ThreatModel):
            raise TypeError("threat must be a ThreatModel, e.g. ThreatModel('linf', 0.3)")
        if threat.norm not in self.norms:
            raise ValueError(f"{type(self).__name__} does not take the {threat.norm} threat model; "
                             f"it takes {', '.join(self.norms)}")
        self._check_settings()
        crit = as_criterion(criterion)
        check_inputs(model, x, threat.bounds)
        if crit.classes.device != x.device:
            raise ValueError(
                f"labels/targets are on {crit.classes.device} but inputs on {x.device}"
            )
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size <= 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if generator is None:  # never the global RNG: a private one with a documented seed
            generator = torch.Generator(device=x.device).manual_seed(DEFAULT_SEED)
        elif not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        elif generator.device != x.device:
            raise ValueError(f"the generator is on {generator.device} but the inputs on {x.device}; "
                             f"use torch.Generator(device={str(x.device)!r})")
        n = x.shape[0]
        with eval_mode(model):
            if n:
                with torch.no_grad():
                    probe = model(x[: min(n, 2)])
                check_logits(probe, min(n, 2))
                crit.validate(n, probe.shape[1])
            bs = batch_size or n or 1
            parts = []
            for start in range(0, n, bs):
                sl = slice(start, start + bs)
                parts.append(self._run(model, x[sl], crit[sl], threat, generator))
            if not parts:
                empty = x.new_zeros((0,))
                return AttackResult(x.clone(), empty.bool(), x.new_zeros((0, 0)), empty,
                                    empty.long(), empty.long())
        return AttackResult.cat(parts)

    @abstractmethod
    def _run(self, model: nn.Module, x: torch.Tensor, criterion: Criterion, threat: ThreatModel,
             generator: torch.Generator | None) -> AttackResult:
        """Attack one batch (model already in eval mode, inputs validated)."""


def require_int(name: str, value: object, minimum: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer ``>= minimum`` (attack settings)."""
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def require_loss(loss: object) -> None:
    """Raise ``ValueError`` unless ``loss`` names a loss of :data:`advlab.losses.LOSSES`."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)}")


def require_step(step_size: float | None, rel_step_size: float | None) -> None:
    """Raise ``ValueError`` for a negative step size, or for both an absolute and a relative one."""
    if step_size is not None and rel_step_size is not None:
        raise ValueError(f"give step_size ({step_size}) or rel_step_size ({rel_step_size}), not both: "
                         "step_size would silently win")
    if step_size is not None and not step_size >= 0:
        raise ValueError(f"step_size must be >= 0, got {step_size}")
    if rel_step_size is not None and not rel_step_size >= 0:
        raise ValueError(f"rel_step_size must be >= 0, got {rel_step_size}")
