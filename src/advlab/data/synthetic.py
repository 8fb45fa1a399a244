"""Tiny synthetic image datasets for tests and examples.

:func:`make_linear_blobs` draws one random prototype image per class and adds Gaussian
noise, so the classes are (nearly) linearly separable and a linear model learns them in a
few steps. Everything is drawn from the given :class:`torch.Generator`; the global RNG is
never touched.
"""

from __future__ import annotations

import torch

from .dataset import SPLITS, ImageDataset, _check_positive_int

__all__ = ["make_linear_blobs"]


def make_linear_blobs(
    n: int,
    shape: tuple[int, int, int] = (1, 8, 8),
    num_classes: int = 2,
    noise: float = 0.1,
    generator: torch.Generator | None = None,
    split: str = "train",
) -> ImageDataset:
    """Make a small, nearly linearly separable image dataset.

    Class ``k``'s prototype is an image with pixels drawn uniformly from ``[0.2, 0.8]``;
    each example is its class prototype plus ``noise * N(0, 1)`` per pixel, clipped to
    ``[0, 1]`` and stored as ``uint8``. Labels cycle ``0, 1, ..., num_classes - 1`` so the
    classes are balanced.

    Args:
        n: Number of examples.
        shape: Image shape ``(C, H, W)``.
        num_classes: Number of classes (at least 2).
        noise: Standard deviation of the per-pixel noise (in ``[0, 1]`` units).
        generator: Source of randomness. ``None`` uses a fresh generator seeded with 0, so
            the default output is reproducible (and the global RNG is left alone). Prototypes
            and noise both come from it, so pass the *same* seed to get train and test data
            of the same classes (e.g. draw ``2 * n`` and split).
        split: Split name to record (``"train"`` or ``"test"``).

    Returns:
        An :class:`ImageDataset` named ``"synthetic"`` with class names ``"0"``, ``"1"``, ...

    Raises:
        ValueError: A size is not positive, ``num_classes < 2`` or ``noise < 0``.
    """
    n = _check_positive_int(n, "n")
    num_classes = _check_positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), got {shape}")
    dims = tuple(_check_positive_int(s, "shape entries") for s in shape)
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    device = generator.device
    prototypes = 0.2 + 0.6 * torch.rand((num_classes, *dims), generator=generator, device=device)
    labels = torch.arange(n, device=device) % num_classes
    x = prototypes[labels] + noise * torch.randn((n, *dims), generator=generator, device=device)
    images = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return ImageDataset(
        images=images.cpu(),
        labels=labels.to(torch.int64).cpu(),
        classes=tuple(str(k) for k in range(num_classes)),
        name="synthetic",
        split=split,
    )
