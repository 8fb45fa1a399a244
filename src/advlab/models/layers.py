"""Small building blocks shared by the models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Normalize"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as the first layer, so models take raw [0, 1] inputs.

    Args:
        mean: one value per channel (or a single value).
        std: one value per channel (or a single value), all positive.
        channels: number of input channels.
    """

    def __init__(self, mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0,
                 channels: int = 1) -> None:
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.float32, device="cpu").reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float32, device="cpu").reshape(-1)
        if m.numel() == 1:
            m = m.expand(channels)
        if s.numel() == 1:
            s = s.expand(channels)
        if m.numel() != channels or s.numel() != channels:
            raise ValueError(f"mean/std need 1 or {channels} values")
        if bool((s <= 0).any()):
            raise ValueError("std must be positive")
        self.register_buffer("mean", m.clone().reshape(1, channels, 1, 1))
        self.register_buffer("std", s.clone().reshape(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return (x - self.mean) / self.std
        return (x - self.mean.reshape(1, -1)) / self.std.reshape(1, -1)
