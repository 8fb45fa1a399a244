"""CLI support for defenses: ``advlab train --defense ...`` (objectives, labels, curves, DDP).

The ``train`` command itself is declared in :mod:`advlab.cli.app`; it validates
every setting here (:func:`build_objective`, :func:`check_labels`) before any
data is loaded or training starts, then calls :func:`run_training`.
Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) it joins the process
group (gloo on CPU, nccl on GPU) and only rank 0 prints and writes files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from advlab.defenses import DEFENSES

#: default eps per defense (Linf for the adversarial ones, L2 for VAT)
DEFAULT_EPS = {"fgsm": 0.25, "fgsm-rs": 0.3, "pgd": 0.3, "trades": 0.3, "vat": 2.0}


def build_objective(defense: str, *, eps: float | None, alpha: float, steps: int | None,
                    step_size: float | None, beta: float, xi: float, vat_iterations: int,
                    entropy_min: bool, norm: str | None) -> Any:
    """The validated training objective for ``--defense`` (raises ``ValueError`` on bad settings)."""
    from advlab.defenses import (
        TRADES,
        VAT,
        CleanObjective,
        FastFGSMTraining,
        FGSMTraining,
        PGDTraining,
    )

    key = defense.lower()
    if key not in DEFENSES:
        raise ValueError(f"unknown defense {defense!r}; use one of {sorted(DEFENSES)}")
    if eps is not None and (not math.isfinite(eps) or eps < 0):
        raise ValueError(f"--eps must be a finite number >= 0, got {eps}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1] (weight of the clean loss), got {alpha}")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if step_size is not None and step_size < 0:
        raise ValueError(f"--step-size must be >= 0, got {step_size}")
    if beta < 0:
        raise ValueError(f"--beta must be >= 0, got {beta}")
    if key == "none":
        return CleanObjective()
    e = DEFAULT_EPS[key] if eps is None else eps
    obj: Any
    if key == "fgsm":
        obj = FGSMTraining(eps=e, alpha=alpha, norm=norm or "linf")
    elif key == "fgsm-rs":
        obj = FastFGSMTraining(eps=e, step_size=step_size, norm=norm or "linf")
    elif key == "pgd":
        obj = PGDTraining(eps=e, steps=steps or 7, step_size=step_size, norm=norm or "linf")
    elif key == "trades":
        obj = TRADES(eps=e, beta=beta, steps=steps or 10, step_size=step_size,
                     norm=norm or "linf")
    else:
        obj = VAT(eps=e, xi=xi, iterations=vat_iterations, entropy_min=entropy_min,
                  norm=norm or "l2")
    obj.validate()
    return obj


def check_labels(n_labels: int | None, defense: str) -> None:
    """Validate ``--labels`` before loading data."""
    if n_labels is None:
        return
    if defense.lower() != "vat":
        raise ValueError("--labels (semi-supervised training) needs --defense vat")
    if n_labels < 1:
        raise ValueError(f"--labels must be >= 1, got {n_labels}")


def select_labeled(labels: torch.Tensor, n_labels: int, num_classes: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n_labels`` examples, ``n_labels / num_classes`` per class, drawn with ``generator``.

    Raises:
        ValueError: ``n_labels`` exceeds the dataset, is not a multiple of the number of
            classes, or a class has too few examples.
    """
    n = int(labels.shape[0])
    if n_labels > n:
        raise ValueError(f"--labels {n_labels} exceeds the {n} training examples")
    if n_labels % num_classes:
        raise ValueError(f"--labels must be a multiple of the {num_classes} classes "
                         f"(balanced selection), got {n_labels}")
    per = n_labels // num_classes
    chosen = []
    for c in range(num_classes):
        idx = (labels == c).nonzero().squeeze(1)
        if idx.numel() < per:
            raise ValueError(f"class {c} has only {idx.numel()} examples; --labels needs {per} "
                             "per class")
        chosen.append(idx[torch.randperm(idx.numel(), generator=generator)[:per]])
    return torch.cat(chosen).sort().values


def init_distributed() -> tuple[int, int, torch.device | None]:
    """Join the torchrun process group if ``WORLD_SIZE > 1``: ``(rank, world, device)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, None
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = None
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return dist.get_rank(), dist.get_world_size(), device


def finish_distributed(synchronize: bool = True) -> None:
    """Leave the process group. With ``synchronize`` every rank first waits at a barrier, so
    no rank tears gloo down while rank 0 still writes results (a rank that left early aborted
    with "terminate called without an active exception", seen once in CI-like runs); after an
    error the barrier is skipped, since the other ranks may never reach it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def curves_json(result: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The learning-curve JSON written next to the checkpoint."""
    return {"meta": meta, "curves": result.curves(),
            "history": [h.__dict__ for h in result.history],
            "passes": result.passes, "seconds": result.seconds}


def write_curves(path: Path, obj: dict[str, Any]) -> None:
    """Write the learning-curve JSON atomically."""
    from advlab.io import atomic_write_json

    atomic_write_json(path, obj)
