"""Several models fused into one: the objective of the ensemble attack (Liu et al. 2017).

Used by :func:`advlab.analysis.transfer.ensemble_transfer` and by
:class:`advlab.attacks.substitute.SubstituteAttack` (its substitute ensemble).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EnsembleModel"]


class EnsembleModel(nn.Module):
    """Several models fused into one, the objective of the ensemble attack.

    ``combine="prob"`` (Liu et al. 2017) returns the log of the weighted average of
    the members' softmax probabilities, a valid logit vector whose cross-entropy is
    the paper's ensemble loss; ``combine="logits"`` averages the logits.

    Args:
        models: members (all taking the same inputs and giving the same classes).
        weights: non-negative weights (default: equal); normalised to sum to 1.
        combine: ``"prob"`` or ``"logits"``.

    References:
        Liu, Chen, Liu & Song, "Delving into Transferable Adversarial Examples and
        Black-box Attacks", ICLR 2017 (arXiv:1611.02770).
    """

    def __init__(self, models: Sequence[nn.Module], weights: Sequence[float] | None = None,
                 combine: str = "prob") -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        if combine not in ("prob", "logits"):
            raise ValueError(f"combine must be 'prob' or 'logits', got {combine!r}")
        w = torch.ones(len(models)) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if w.shape != (len(models),) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError("weights must be one non-negative number per model, not all zero")
        self.members = nn.ModuleList(models)
        self.register_buffer("weights", w / w.sum())
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(x) for m in self.members])  # (K, N, C)
        weights: torch.Tensor = self.weights  # type: ignore[assignment]
        w = weights.to(outs.dtype)
        if self.combine == "logits":
            return (outs * w[:, None, None]).sum(dim=0)
        logp = F.log_softmax(outs, dim=2)
        return torch.logsumexp(logp + w.log()[:, None, None], dim=0)
