"""Per-sample attack objectives on logits.

Every function returns one value per sample, to be *maximised* by an attack:
``targets`` given means "reach this class", otherwise "leave ``labels``".
Logit masking uses ``masked_fill(-inf)``, never multiplication.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_entropy", "cw_margin", "dlr", "LOSSES", "best_other_logit"]


def best_other_logit(logits: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Largest logit among all classes except ``cls`` (per sample)."""
    mask = F.one_hot(cls, logits.shape[1]).bool()
    return logits.masked_fill(mask, float("-inf")).amax(dim=1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """Cross-entropy (Goodfellow et al. 2014): ``+CE(y)`` untargeted, ``-CE(t)`` targeted."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    return -ce if targeted else ce


def cw_margin(
    logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False, kappa: float = float("inf")
) -> torch.Tensor:
    """Carlini & Wagner (2017) margin loss on logits.

    Untargeted: ``max_{j != y} z_j - z_y``; targeted: ``z_t - max_{j != t} z_j``,
    clipped above at ``kappa`` (no clipping by default).

    References:
        Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks",
        IEEE S&P 2017.
    """
    own = logits.gather(1, labels[:, None]).squeeze(1)
    other = best_other_logit(logits, labels)
    margin = own - other if targeted else other - own
    return torch.clamp(margin, max=kappa)


def dlr(logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020), shift- and scale-invariant.

    Untargeted: ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)``. The targeted
    version (for ``labels`` = target) uses ``z_pi1 - (z_pi3 + z_pi4) / 2``.

    References:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an
        ensemble of diverse parameter-free attacks", ICML 2020.
    """
    if logits.shape[1] < 3 or (targeted and logits.shape[1] < 4):
        return cw_margin(logits, labels, targeted)
    srt, _ = logits.sort(dim=1, descending=True)
    own = logits.gather(1, labels[:, None]).squeeze(1)
    other = best_other_logit(logits, labels)
    if targeted:
        denom = srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12
        return (own - other) / denom
    denom = srt[:, 0] - srt[:, 2] + 1e-12
    return (other - own) / denom


LOSSES = {"ce": cross_entropy, "cw": cw_margin, "dlr": dlr}
