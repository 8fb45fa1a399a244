"""``--attacks auto``: a cascade that decides where to spend its passes as it goes.

AutoAttack (Croce & Hein 2020) runs every attack on every point that is still robust;
on a model whose gradients are honest, the black-box stage then spends most of the
passes (5,000 queries per robust point) and breaks nothing. Adaptive Auto Attack (Liu et
al., CVPR 2022) and AutoAE (Liu, Peng & Tang, AAAI 2023) spend attack iterations where
they pay. ``auto`` applies the same idea at the level of stages:

1. **White box on every point:** APGD-CE, then APGD-T on the 3 classes the logits rank
   highest (targets chosen from the logits), each stopping per point once it is broken.
2. **Probe with a black-box attack:** Square with 1,000 queries on a seeded random sample
   of the points still robust (``probe_fraction``, at least ``min_probe`` points). On an
   honest model it breaks none of them.
3. **Escalate only where a check fires:** if the probe broke a point that the white-box
   stages missed, or the model checks saw masked gradients (zero gradients, gradients
   that disagree with finite differences, randomness, probabilities as outputs), Square
   with 5,000 queries runs on *every* remaining robust point, and the result says why
   (a warning with code ``auto_escalated``).

Each phase is an ordinary :func:`~advlab.evaluation.cascade.cascade` on the points that
reach it, so ``auto`` keeps what ``standard`` promises: resumable (the phases save to
``STATE``, ``STATE.probe`` and ``STATE.escalate``), sharded under ``torch.distributed``,
masking checks, and the threat model re-verified at the end of every phase.

References:
    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020. Liu et al., "Practical Evaluation of Adversarial
    Robustness via Adaptive Auto Attack", CVPR 2022. Liu, Peng & Tang, "AutoAE: ensembling
    attacks by improvement per iteration", AAAI 2023. Andriushchenko et al., "Square Attack",
    ECCV 2020.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.attacks import Attack
from advlab.evaluation.cascade import CascadeResult, _dist, cascade
from advlab.evaluation.checks import CheckWarning, check_black_box
from advlab.threat import ThreatModel

__all__ = ["auto_cascade", "run_cascade", "WHITE_BOX", "PROBE", "ESCALATE", "MASKING_CODES"]

WHITE_BOX = ["apgd-ce", "apgd-t3"]
PROBE = "square1k"
ESCALATE = "square"
#: model-check codes that mean the gradients cannot be trusted: escalate at once
MASKING_CODES = ("zero_gradients", "gradient_mismatch", "randomized", "probabilities",
                 "log_probabilities")


def _probe_points(robust: torch.Tensor, seed: int, fraction: float, minimum: int) -> torch.Tensor:
    """A seeded random sample (sorted indices) of the robust points."""
    idx = robust.nonzero().squeeze(1)
    m = min(int(idx.numel()), max(minimum, math.ceil(fraction * int(idx.numel()))))
    h = hashlib.sha256(f"advlab-auto-probe:{seed}".encode()).digest()
    gen = torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & ((1 << 63) - 1))
    return idx[torch.randperm(int(idx.numel()), generator=gen)[:m]].sort().values


def _phase_path(state_path: str | Path | None, suffix: str) -> Path | None:
    return None if state_path is None else Path(f"{state_path}.{suffix}")


def _sub_run(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, points: torch.Tensor,
             stage: str, threat: ThreatModel, seed: int, batch_size: int, state: Path | None,
             keep: bool, on_chunk: Callable[[str, int, int], None] | None,
             overwrite: bool) -> CascadeResult:
    dev = x.device
    return cascade(model, x[points.to(dev)], labels[points.to(labels.device)], [stage], threat,
                   seed=seed, batch_size=batch_size, state_path=state, checks=False,
                   keep_adversarials=keep, on_chunk=on_chunk, overwrite=overwrite)


def _merge(base: CascadeResult, parts: list[tuple[torch.Tensor, CascadeResult]],
           warnings_: list[CheckWarning], plan: list[str]) -> CascadeResult:
    """One result: ``base`` (all points) plus phases run on subsets ``points``."""
    n = base.n_examples
    robust, broken_by = base.robust_correct.clone(), base.broken_by.clone()
    x_adv = None if base.x_adv is None else base.x_adv.clone()
    stages = list(base.stages)
    for points, res in parts:
        hit = res.broken_by >= 0
        robust[points[hit]] = False
        broken_by[points[hit]] = len(stages)
        if x_adv is not None and res.x_adv is not None:
            x_adv[points[hit]] = res.x_adv[hit]
        for lg in res.stages:
            stages.append(replace(lg, robust_acc=int(robust.sum()) / max(1, n)))
    every = [base, *(r for _, r in parts)]
    return replace(
        base, robust_acc=int(robust.sum()) / n if n else math.nan, stages=stages,
        warnings=base.warnings + [w for _, r in parts for w in r.warnings] + warnings_,
        seconds=sum(r.seconds for r in every), passes=sum(s.passes for s in stages),
        forwards=sum(s.forwards for s in stages), resumed=any(r.resumed for r in every),
        robust_correct=robust, broken_by=broken_by, x_adv=x_adv, plan=plan)


def auto_cascade(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, threat: ThreatModel, *,
                 seed: int = 0, batch_size: int = 500, state_path: str | Path | None = None,
                 checks: bool = True, keep_adversarials: bool = False,
                 on_chunk: Callable[[str, int, int], None] | None = None, overwrite: bool = False,
                 probe_fraction: float = 0.1, min_probe: int = 20) -> CascadeResult:
    """The adaptive cascade described in this module; same arguments as ``cascade``.

    Args:
        probe_fraction: share of the points left robust by the white-box stages that the
            Square probe attacks (``0 < probe_fraction <= 1``).
        min_probe: the probe attacks at least this many points (all, if fewer are robust).

    Returns:
        A :class:`CascadeResult` whose stages are the phases that ran, with ``plan``
        saying in words what ran where and why.
    """
    if not 0 < probe_fraction <= 1:
        raise ValueError(f"probe_fraction must be in (0, 1], got {probe_fraction}")
    if isinstance(min_probe, bool) or not isinstance(min_probe, int) or min_probe < 1:
        raise ValueError(f"min_probe must be an integer >= 1, got {min_probe!r}")
    keep_adversarials = keep_adversarials and _dist()[1] == 1  # shards hold only their own points
    base = cascade(model, x, labels, WHITE_BOX, threat, seed=seed, batch_size=batch_size,
                   state_path=state_path, checks=checks, keep_adversarials=keep_adversarials,
                   on_chunk=on_chunk, overwrite=overwrite)
    plan = [f"white box ({', '.join(WHITE_BOX)}) on all {base.n_examples} points"]
    robust = base.robust_correct.clone()
    if not bool(robust.any()):
        return replace(base, plan=plan + ["no point left robust: nothing to probe"])
    masked = sorted({w.code for w in base.warnings if w.code in MASKING_CODES})
    parts: list[tuple[torch.Tensor, CascadeResult]] = []
    found = 0
    if not masked:
        probe = _probe_points(robust, seed, probe_fraction, min_probe)
        res = _sub_run(model, x, labels, probe, PROBE, threat, seed + 1, batch_size,
                       _phase_path(state_path, "probe"), keep_adversarials, on_chunk, overwrite)
        parts.append((probe, res))
        found = int((res.broken_by >= 0).sum())
        robust[probe[res.broken_by >= 0]] = False
        plan.append(f"probe: {PROBE} on {probe.numel()} of the {int(base.robust_correct.sum())} "
                    f"robust points, broke {found}")
    warnings_: list[CheckWarning] = []
    if masked or found:
        why = (f"the model checks flagged {', '.join(masked)}" if masked else
               f"the {PROBE} probe broke {found} points that the white-box stages left robust")
        rest = robust.nonzero().squeeze(1)
        if rest.numel():
            parts.append((rest, _sub_run(model, x, labels, rest, ESCALATE, threat, seed + 2,
                                         batch_size, _phase_path(state_path, "escalate"),
                                         keep_adversarials, on_chunk, overwrite)))
        msg = (f"auto escalated: {why}, so the gradients are not trusted; {ESCALATE} (5,000 "
               f"queries) ran on all {rest.numel()} remaining robust points")
        warnings_.append(CheckWarning("auto_escalated", msg, {"reason": why, "points": int(rest.numel())}))
        plan.append(msg)
    else:
        plan.append("no check fired and the probe broke nothing: no further black-box stage")
    out = _merge(base, parts, warnings_, plan)
    if checks and found:
        out.warnings.extend(check_black_box([s.name for s in out.stages],
                                            [s.name.startswith("square") for s in out.stages],
                                            [s.broken for s in out.stages]))
    return out



def run_cascade(model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                stages: str | Sequence[str] | Sequence[tuple[str, Attack]], threat: ThreatModel,
                **options: Any) -> CascadeResult:
    """:func:`~advlab.evaluation.cascade.cascade`, or :func:`auto_cascade` for ``"auto"``."""
    if isinstance(stages, str) and stages.strip().lower() == "auto":
        return auto_cascade(model, x, labels, threat, **options)
    return cascade(model, x, labels, stages, threat, **options)
