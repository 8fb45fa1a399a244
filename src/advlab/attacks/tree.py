"""The decision-tree attack: move the input into the nearest leaf of another class.

A decision tree partitions the input space into axis-aligned boxes, one per leaf,
each with a constant prediction. Papernot, McDaniel & Goodfellow (2016) craft an
adversarial example for a tree by finding a leaf of another class near the
input's leaf and changing the features tested on the path so that the input
falls into it. We search *every* leaf and move the input to the nearest point of
the nearest box with a different (or the target) class in the threat model's
norm; clipping to a box is the nearest point of the box for every Lp norm, so
this is the exact minimal perturbation for a single tree, never larger than the
tree-neighbourhood search of the paper.

This is not a gradient attack and does not take an ``nn.Module``: it reads the
tree's structure (``tree_.feature``, ``tree_.threshold``). scikit-learn routes
``x[f] <= threshold`` to the left child, so the box of a leaf is
``lower < x <= upper`` per feature; the attack lands ``margin`` inside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from advlab.attacks.base import AttackResult, constructor_settings
from advlab.criteria import Criterion, as_criterion
from advlab.threat import ThreatModel

__all__ = ["DecisionTreeAttack", "LeafBoxes", "leaf_boxes"]

log = logging.getLogger(__name__)


@dataclass
class LeafBoxes:
    """The leaves of a fitted tree as boxes ``lower < x <= upper``.

    Attributes:
        lower, upper: ``(L, D)`` float64 bounds per leaf (``-inf``/``inf`` if unconstrained).
        label: ``(L,)`` predicted class of each leaf.
        node: ``(L,)`` node index of each leaf in ``tree_``.
    """

    lower: np.ndarray
    upper: np.ndarray
    label: np.ndarray
    node: np.ndarray


def _estimator(tree: Any) -> Any:
    est = getattr(tree, "estimator_", tree)
    if not hasattr(est, "tree_"):
        raise TypeError("DecisionTreeAttack needs a fitted SklearnDecisionTree or scikit-learn "
                        f"DecisionTreeClassifier, got {type(tree).__name__}")
    return est


def leaf_boxes(tree: Any) -> LeafBoxes:
    """Enumerate the leaves of a fitted decision tree as boxes (depth-first)."""
    est = _estimator(tree)
    t = est.tree_
    d = int(est.n_features_in_)
    lowers, uppers, labels, nodes = [], [], [], []
    stack = [(0, np.full(d, -np.inf), np.full(d, np.inf))]
    while stack:
        node, lo, hi = stack.pop()
        left, right = int(t.children_left[node]), int(t.children_right[node])
        if left == -1:  # leaf
            lowers.append(lo)
            uppers.append(hi)
            labels.append(int(np.argmax(t.value[node][0])))
            nodes.append(node)
            continue
        f, thr = int(t.feature[node]), float(t.threshold[node])
        lo_l, hi_l = lo, hi.copy()
        hi_l[f] = min(hi_l[f], thr)
        lo_r, hi_r = lo.copy(), hi
        lo_r[f] = max(lo_r[f], thr)
        stack.append((right, lo_r, hi_r))
        stack.append((left, lo_l, hi_l))
    classes = np.asarray(est.classes_)
    return LeafBoxes(np.stack(lowers), np.stack(uppers), classes[np.asarray(labels)].astype(np.int64),
                     np.asarray(nodes))


class DecisionTreeAttack:
    """Minimal-perturbation attack on a decision tree (nearest leaf of another class).

    Args:
        margin: how far inside the target leaf's box the example lands (guards
            against float32 rounding at thresholds).
        chunk_elements: memory bound for the vectorised distance computation
            (samples x leaves x features per chunk).

    Call it as ``attack(tree, x, criterion, threat=ThreatModel("linf", 0.3))``. With a
    threat model, a sample whose nearest admissible leaf is farther than ``eps`` is
    returned unchanged and unsuccessful; with ``threat=None`` every sample is moved
    to its nearest admissible leaf (unbounded). ``info["min_distance"]`` holds the
    per-sample minimal distance found.

    References:
        Papernot, McDaniel & Goodfellow, "Transferability in Machine Learning: from
        Phenomena to Black-Box Attacks using Adversarial Samples", arXiv:1605.07277, 2016
        (Section 3.3, the decision-tree attack).
        Kantchelian, Tygar & Joseph, "Evasion and Hardening of Tree Ensemble
        Classifiers", ICML 2016 (exact evasion of a single tree by leaf enumeration).
    """

    bounded = True

    def __init__(self, margin: float = 1e-4, chunk_elements: int = 20_000_000) -> None:
        self.margin = margin
        self.chunk_elements = chunk_elements

    def settings(self) -> dict[str, Any]:
        """The constructor settings (from its signature), for JSON results."""
        return {"attack": type(self).__name__, **constructor_settings(self)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in constructor_settings(self).items())
        return f"DecisionTreeAttack({args})"

    def __call__(
        self,
        tree: Any,
        x: torch.Tensor,
        criterion: Criterion | torch.Tensor,
        *,
        threat: ThreatModel | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
    ) -> AttackResult:
        """Attack ``x``; ``generator`` and ``batch_size`` are accepted for API symmetry.

        Returns:
            :class:`~advlab.attacks.base.AttackResult` with ``logits`` = log-probabilities
            of the tree, ``passes`` = 0 and ``forwards`` = 1 per sample.
        """
        est = _estimator(tree)
        if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
            raise TypeError("inputs must be a floating-point torch.Tensor in [0, 1]")
        if threat is not None and not isinstance(threat, ThreatModel):
            raise TypeError("threat must be a ThreatModel or None")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        crit = as_criterion(criterion)
        n = x.shape[0]
        d = int(np.prod(x.shape[1:])) if x.ndim > 1 else 0
        if d != est.n_features_in_:
            raise ValueError(f"the tree expects {est.n_features_in_} features, got inputs of shape "
                             f"{tuple(x.shape)}")
        crit.validate(n, len(est.classes_))
        lo_b, hi_b = threat.bounds if threat is not None else bounds
        norm = threat.norm if threat is not None else "linf"
        boxes = leaf_boxes(est)
        m = self.margin
        # admissible target region per leaf: [lower + m, upper - m] within the input bounds
        tl = np.maximum(boxes.lower + m, lo_b)
        tu = np.minimum(boxes.upper - m, hi_b)
        feasible = (tl <= tu).all(axis=1)
        tl_t = torch.as_tensor(tl, dtype=torch.float64)
        tu_t = torch.as_tensor(tu, dtype=torch.float64)
        xf = x.detach().reshape(n, -1).cpu().double()
        n_leaves = tl.shape[0]
        step = max(1, self.chunk_elements // max(1, n_leaves * d))
        best_dist, best_leaf = _nearest_leaves(xf, tl_t, tu_t, torch.as_tensor(boxes.label),
                                               torch.as_tensor(feasible), crit.classes.cpu(),
                                               crit.targeted, norm, step)
        x_adv = xf.clone()
        found = best_leaf >= 0
        if threat is not None:
            found &= best_dist <= threat.eps
        idx = found.nonzero().squeeze(1)
        if idx.numel():
            leaves = best_leaf[idx]
            x_adv[idx] = torch.minimum(torch.maximum(xf[idx], tl_t[leaves]), tu_t[leaves])
        x_adv_t = x_adv.to(x.dtype).reshape(x.shape).to(x.device)
        if threat is not None:  # float rounding must not leave the ball or the box
            x_adv_t = threat.project(x_adv_t, x)
        xa_np = x_adv_t.reshape(n, -1).cpu().numpy().astype(np.float32)
        if n:
            proba = est.predict_proba(xa_np)
            logits = torch.log(torch.as_tensor(proba, dtype=x.dtype).clamp_min(1e-12)).to(x.device)
        else:
            logits = x.new_zeros((0, len(est.classes_)))
        success = crit.to(x.device).is_success(logits)
        dist_norm = (threat.strategy if threat is not None else ThreatModel(norm, 0.0).strategy)
        return AttackResult(
            x_adv=x_adv_t, success=success, logits=logits,
            distance=dist_norm.distance(x_adv_t, x),
            passes=torch.zeros(n, dtype=torch.long, device=x.device),
            forwards=torch.ones(n, dtype=torch.long, device=x.device),
            info={"min_distance": best_dist.to(x.dtype), "leaves": n_leaves},
        )


def _nearest_leaves(xf: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, leaf_label: torch.Tensor,
                    feasible: torch.Tensor, classes: torch.Tensor, targeted: bool, norm: str,
                    step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the distance to and index of the nearest admissible leaf box (-1: none).

    A leaf is admissible when its (margin-shrunk) box is non-empty and its class is the
    target (targeted) or not the label (untargeted). ``step`` samples at a time.
    """
    n = xf.shape[0]
    best_leaf = torch.full((n,), -1, dtype=torch.long)
    best_dist = torch.full((n,), float("inf"), dtype=torch.float64)
    for s in range(0, n, step):
        xs = xf[s:s + step]
        gap = (lower[None] - xs[:, None]).clamp_min(0) + (xs[:, None] - upper[None]).clamp_min(0)
        if norm == "linf":
            dist = gap.amax(dim=2)
        elif norm == "l2":
            dist = gap.pow(2).sum(dim=2).sqrt()
        else:
            dist = gap.sum(dim=2)
        cls = classes[s:s + step, None]
        ok = (leaf_label[None] == cls) if targeted else (leaf_label[None] != cls)
        dist = dist.masked_fill(~(ok & feasible[None]), float("inf"))
        dmin, arg = dist.min(dim=1)
        best_dist[s:s + step] = dmin
        best_leaf[s:s + step] = torch.where(torch.isfinite(dmin), arg, torch.full_like(arg, -1))
    return best_dist, best_leaf
