"""scikit-learn's bundled 8x8 handwritten digits (no download needed).

The 1,797 images ship with scikit-learn (:func:`sklearn.datasets.load_digits`) with pixel
values ``0..16``; they are rescaled to ``uint8`` as ``round(v * 255 / 16)`` and shaped
``(N, 1, 8, 8)``.

The dataset has no official split, so advlab fixes one: a *stratified* split with
``test_size=360`` and ``random_state=0`` (``sklearn.model_selection.train_test_split``),
giving 1,437 training and 360 test images. Within each split the examples keep their
original order. The split only uses scikit-learn's own seeded RNG, never a global one.

References:
    E. Alpaydin, C. Kaynak. *Optical Recognition of Handwritten Digits*. UCI Machine
    Learning Repository, 1998.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import SPLITS, DatasetError, ImageDataset

__all__ = ["DIGITS_CLASSES", "DIGITS_RANDOM_STATE", "DIGITS_TEST_SIZE", "load_digits"]

DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
#: Number of test examples in advlab's fixed split.
DIGITS_TEST_SIZE = 360
#: ``random_state`` of advlab's fixed split.
DIGITS_RANDOM_STATE = 0


def load_digits(split: str = "train") -> ImageDataset:
    """Load scikit-learn's 8x8 digits with advlab's fixed stratified split.

    Args:
        split: ``"train"`` (1,437 images) or ``"test"`` (360 images).

    Returns:
        The dataset: ``uint8`` images ``(N, 1, 8, 8)`` in ``0..255``, class names
        ``"0"`` .. ``"9"``.

    Raises:
        DatasetError: ``split`` is unknown.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for digits; use one of {SPLITS}")
    from sklearn.datasets import load_digits as sk_load_digits  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    bunch = sk_load_digits()
    values = np.asarray(bunch.data, dtype=np.float64)
    target = np.asarray(bunch.target, dtype=np.int64)
    images = np.rint(values * 255.0 / 16.0).clip(0, 255).astype(np.uint8).reshape(-1, 1, 8, 8)
    train_idx, test_idx = train_test_split(
        np.arange(len(target)),
        test_size=DIGITS_TEST_SIZE,
        stratify=target,
        random_state=DIGITS_RANDOM_STATE,
    )
    index = np.sort(train_idx if split == "train" else test_idx)
    return ImageDataset(
        images=torch.from_numpy(np.ascontiguousarray(images[index])),
        labels=torch.from_numpy(target[index]),
        classes=DIGITS_CLASSES,
        name="digits",
        split=split,
    )
