"""Attack criteria: what counts as success. Targeting is data, not a mode.

An attack receives a criterion object together with the inputs. A plain label
tensor is accepted too and means :class:`Misclassification`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from advlab.losses import LOSSES

__all__ = ["Criterion", "Misclassification", "TargetedMisclassification", "as_criterion"]


class Criterion(ABC):
    """Success test and objective for a batch; sliceable for batching."""

    targeted: bool

    def __init__(self, classes: torch.Tensor) -> None:
        if not isinstance(classes, torch.Tensor):
            raise TypeError(f"labels/targets must be a torch.Tensor, got {type(classes).__name__}")
        if classes.dtype.is_floating_point or classes.dtype == torch.bool or classes.ndim != 1:
            raise TypeError(
                "labels/targets must be a 1-D integer tensor of class indices, "
                f"got dtype {classes.dtype} and shape {tuple(classes.shape)}"
            )
        self.classes = classes.long()

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    def __getitem__(self, idx: torch.Tensor | slice) -> Criterion:
        return type(self)(self.classes[idx])

    @abstractmethod
    def is_success(self, logits: torch.Tensor) -> torch.Tensor:
        """Boolean per sample: does this output satisfy the criterion?

        An output with a NaN or infinite logit is never a success: its argmax means nothing.
        """

    def loss(self, logits: torch.Tensor, kind: str = "ce") -> torch.Tensor:
        """Per-sample objective to maximise (``kind``: ``"ce" | "cw" | "dlr"``)."""
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; use one of {sorted(LOSSES)}")
        return LOSSES[kind](logits, self.classes, self.targeted)

    def validate(self, n: int, num_classes: int) -> None:
        """Check sizes against a batch of ``n`` inputs and ``num_classes`` outputs."""
        if len(self) != n:
            raise ValueError(f"got {n} inputs but {len(self)} labels/targets")
        if n and (int(self.classes.min()) < 0 or int(self.classes.max()) >= num_classes):
            raise ValueError(f"labels/targets must lie in [0, {num_classes - 1}]")

    def to(self, device: torch.device) -> Criterion:
        return type(self)(self.classes.to(device))


class Misclassification(Criterion):
    """Untargeted: success when the predicted class differs from ``labels``."""

    targeted = False

    def __init__(self, labels: torch.Tensor) -> None:
        super().__init__(labels)

    @property
    def labels(self) -> torch.Tensor:
        return self.classes

    def is_success(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.argmax(dim=1) != self.classes) & _finite_rows(logits)


class TargetedMisclassification(Criterion):
    """Targeted: success when the predicted class equals ``targets``."""

    targeted = True

    def __init__(self, targets: torch.Tensor) -> None:
        super().__init__(targets)

    @property
    def targets(self) -> torch.Tensor:
        return self.classes

    def is_success(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.argmax(dim=1) == self.classes) & _finite_rows(logits)


def _finite_rows(logits: torch.Tensor) -> torch.Tensor:
    """Rows without NaN or infinity: a model that breaks down is not fooled (no success)."""
    return torch.isfinite(logits).all(dim=1)


def as_criterion(criterion: Criterion | torch.Tensor) -> Criterion:
    """Accept a criterion or a label tensor (meaning :class:`Misclassification`)."""
    if isinstance(criterion, Criterion):
        return criterion
    return Misclassification(criterion)
