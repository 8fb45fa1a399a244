"""Input validation shared by attacks, evaluation and training.

Bad input raises ``ValueError``/``TypeError`` with a message that says what to
do; nothing here prints.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import torch
from torch import nn

__all__ = [
    "check_inputs",
    "check_logits",
    "model_device",
    "eval_mode",
]

log = logging.getLogger(__name__)


def model_device(model: nn.Module) -> torch.device | None:
    """Device of the model's first parameter or buffer (``None`` if it has neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


def check_inputs(
    model: nn.Module, x: torch.Tensor, bounds: tuple[float, float] = (0.0, 1.0)
) -> None:
    """Validate a batch of inputs for ``model``.

    Raises:
        TypeError: ``x`` is not a floating-point tensor.
        ValueError: wrong rank, NaN/inf, values outside ``bounds``, or ``x`` on
            another device than the model.
        TypeError: ``x`` is not floating point, or its dtype is not the model's
            parameter dtype (float64 images into a float32 network).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"inputs must be a floating-point tensor in [{bounds[0]}, {bounds[1]}], got {x.dtype}"
            " (convert uint8 images with x.float() / 255)"
        )
    if x.ndim < 2:
        raise ValueError(f"inputs must be batched (N, ...), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("inputs contain NaN or inf values")
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < bounds[0] - 1e-6 or hi > bounds[1] + 1e-6:
            raise ValueError(
                f"inputs lie in [{lo:.4g}, {hi:.4g}], outside the bounds {tuple(bounds)};"
                " pass unnormalized inputs (the model carries its own normalization)"
            )
    dev = model_device(model)
    if dev is not None and dev != x.device:
        raise ValueError(
            f"inputs are on {x.device} but the model is on {dev}; move one of them"
            " (advlab never moves your tensors or model)"
        )
    pdt = next((t.dtype for t in model.parameters() if t.is_floating_point()), None)
    if pdt is not None and pdt != x.dtype:
        raise TypeError(
            f"inputs are {str(x.dtype).replace('torch.', '')} but the model's parameters are "
            f"{str(pdt).replace('torch.', '')}; convert one of them (e.g. x.to({pdt}))"
        )


def check_logits(out: torch.Tensor, n: int) -> None:
    """Validate a model output: ``(n, K)`` finite logits, not probabilities."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"model must return a tensor of logits, got {type(out).__name__}")
    if out.ndim != 2 or out.shape[0] != n:
        raise ValueError(f"model must return logits of shape (N, classes), got {tuple(out.shape)}")
    if out.shape[1] < 2:
        raise ValueError("model must return at least 2 logits per input (use 2 for binary tasks)")
    if not torch.isfinite(out).all():
        raise ValueError("model returned NaN or inf logits")
    with torch.no_grad():
        if n and bool((out >= 0).all()) and bool(
            torch.allclose(out.sum(dim=1), torch.ones(n, dtype=out.dtype, device=out.device),
                           atol=1e-4)
        ):
            raise ValueError(
                "model outputs look like probabilities (non-negative rows summing to 1);"
                " return logits (remove the final softmax)"
            )


@contextlib.contextmanager
def eval_mode(model: nn.Module, what: str = "attack") -> Iterator[nn.Module]:
    """Run ``model`` in eval mode, warning if it was in train mode; restore afterwards."""
    was_training = model.training
    if was_training:
        warnings.warn(
            f"model was in train mode; the {what} runs it in eval mode and restores train mode",
            UserWarning,
            stacklevel=3,
        )
        model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()
