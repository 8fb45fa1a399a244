"""Helpers shared by the analyses (gradients w.r.t. inputs only, model-aware probabilities)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from advlab.attacks.engine import input_grad
from advlab.validation import check_logits

__all__ = ["input_gradient", "log_probs", "probs", "logits_of", "check_generator", "flat_dot"]


def log_probs(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Per-class log-probabilities: log-softmax, or log-sigmoid for log-odds models (RBF)."""
    if getattr(model, "output_kind", "logits") == "logodds":
        return F.logsigmoid(logits)
    return F.log_softmax(logits, dim=1)


def probs(model: nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Per-class probabilities: softmax, or per-class sigmoid for log-odds models."""
    return log_probs(model, logits).exp()


@torch.no_grad()
def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in batches, without gradients (inputs may leave the box)."""
    outs = [model(x[s:s + batch_size]) for s in range(0, x.shape[0], batch_size)]
    out = torch.cat(outs) if outs else x.new_zeros((0, 0))
    if x.shape[0]:
        check_logits(out[:2], min(2, x.shape[0]))
    return out


def input_gradient(
    model: nn.Module, x: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at ``x`` and the gradient of ``objective(logits).sum()`` w.r.t. ``x`` only.

    Parameter ``.grad`` is never touched (``torch.autograd.grad`` on the input).
    """
    logits, _, grad = input_grad(model, x, objective)
    return logits, grad.detach()


def check_generator(generator: torch.Generator | None) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def flat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample dot product of two batches."""
    return (a.reshape(a.shape[0], -1) * b.reshape(b.shape[0], -1)).sum(dim=1)
