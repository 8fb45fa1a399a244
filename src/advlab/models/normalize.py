"""Wrappers that let a model trained on normalised or rescaled inputs take [0, 1] pixels.

Attacks, threat models and reports in advlab work on pixels in [0, 1]; many
practitioners' models expect ``(x - mean) / std`` (ImageNet statistics) or another
value range such as [-1, 1] or [0, 255]. Wrapping such a model moves that step
inside it, so eps keeps its usual meaning (pixel units, e.g. 8/255) and every
attack still clips to the [0, 1] box. Both wrappers are exact affine maps held as
registered buffers: they move with ``.to(device)`` and add no parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Normalized", "Rescaled", "IMAGENET_MEAN", "IMAGENET_STD", "wrap_inputs"]

#: torchvision's ImageNet channel statistics (for inputs in [0, 1])
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _channels(values: Sequence[float] | float, what: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if t.numel() == 0 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} must be finite numbers, one per channel (or one for all), got {values}")
    return t


def _broadcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``t`` (C values) shaped to act on the channel axis 1 of ``x``."""
    if t.numel() == 1:
        return t.reshape(()).to(x.dtype)
    if x.ndim < 2 or x.shape[1] != t.numel():
        raise ValueError(f"{t.numel()} per-channel values do not fit inputs of shape "
                         f"{tuple(x.shape)} (channels on axis 1)")
    return t.reshape(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)


class Normalized(nn.Module):
    """``model((x - mean) / std)``: a model that expects normalised inputs, fed [0, 1] pixels.

    Args:
        model: the classifier that expects normalised inputs.
        mean, std: one value per channel (or one for all); ``std`` positive. For
            torchvision ImageNet models use :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float] | float,
                 std: Sequence[float] | float) -> None:
        super().__init__()
        m, s = _channels(mean, "mean"), _channels(std, "std")
        if bool((s <= 0).any()):
            raise ValueError(f"std must be positive, got {std}")
        if m.numel() != s.numel() and 1 not in (m.numel(), s.numel()):
            raise ValueError(f"mean has {m.numel()} values and std {s.numel()}: give one per channel")
        self.model = model
        self.register_buffer("mean", m.clone())
        self.register_buffer("std", s.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - _broadcast(self.mean, x)) / _broadcast(self.std, x))

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


class Rescaled(nn.Module):
    """``model(lo + (hi - lo) * x)``: a model whose inputs range over ``[lo, hi]``, fed [0, 1] pixels.

    The attacks' [0, 1] box maps onto the model's ``[lo, hi]`` box, and eps stays in
    [0, 1] pixel units (eps 8/255 is 8 grey levels whatever the model's range).
    """

    def __init__(self, model: nn.Module, lo: float, hi: float) -> None:
        super().__init__()
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"the input range needs finite lo < hi, got {lo}, {hi}")
        self.model = model
        self.register_buffer("lo", torch.tensor(lo))
        self.register_buffer("scale", torch.tensor(hi - lo))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.lo.to(x.dtype) + self.scale.to(x.dtype) * x)

    def extra_repr(self) -> str:
        return f"lo={float(self.lo)}, hi={float(self.lo + self.scale)}"


def wrap_inputs(model: nn.Module, *, mean: Sequence[float] | float | None = None,
                std: Sequence[float] | float | None = None,
                bounds: tuple[float, float] | None = None) -> nn.Module:
    """``model`` behind the input steps it expects, applied in order: rescale, then normalise.

    ``bounds`` is the value range the model takes (mean/std are then in those units,
    e.g. ``bounds=(0, 255)`` with ``mean=(123.7, 116.3, 103.5)``). Without any
    argument ``model`` is returned unchanged. Attributes the wrapped model carries
    for advlab (``output_kind``, ``advlab_meta``) are copied onto the wrapper.
    """
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (or neither)")
    inner = model
    if mean is not None and std is not None:
        inner = Normalized(inner, mean, std)
    if bounds is not None:
        inner = Rescaled(inner, *bounds)
    if inner is not model:
        for attr in ("output_kind", "advlab_meta"):
            if hasattr(model, attr):
                setattr(inner, attr, getattr(model, attr))
        inner.train(model.training)
    return inner
