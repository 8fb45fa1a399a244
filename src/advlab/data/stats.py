"""Per-channel normalisation statistics of a set of images."""

from __future__ import annotations

import torch

__all__ = ["normalization_stats"]

#: the smallest standard deviation reported (a constant channel would divide by zero)
MIN_STD = 1e-3


def normalization_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of ``images``, for a model's input layer.

    Args:
        images: ``(N, C, H, W)`` images, ``uint8`` in ``[0, 255]`` (scaled by 1/255) or
            floats in ``[0, 1]``.

    Returns:
        ``(mean, std)``: one float per channel each, the standard deviation at least
        ``1e-3``. These are the ``mean``/``std`` settings of :func:`advlab.models.create_model`.

    Raises:
        TypeError: ``images`` is not a tensor.
        ValueError: ``images`` is not 4-D or is empty.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    x = images.float() / 255 if not images.is_floating_point() else images
    mean = x.mean(dim=(0, 2, 3)).tolist()
    std = x.std(dim=(0, 2, 3)).clamp_min(MIN_STD).tolist()
    return mean, std
