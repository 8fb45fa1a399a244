"""The fit loop: optimizer, epochs, per-epoch metrics, atomic checkpoints and resume.

The loop is defense-agnostic: it takes a :class:`TrainingObjective` (clean
training by default; adversarial objectives plug in here) and counts the
forward+backward example passes the objective spends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from advlab.checkpoint import (
    STATE_FILE,
    CheckpointError,
    load_train_state,
    save_model,
    save_train_state,
)
from advlab.models.zoo import training_loss

__all__ = ["TrainConfig", "EpochLog", "TrainResult", "TrainingObjective", "CleanObjective", "fit",
           "accuracy"]

log = logging.getLogger(__name__)


class TrainingObjective(Protocol):
    """A training loss: returns ``(mean loss, logits used for accuracy, passes per example)``."""

    name: str

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]: ...


class CleanObjective:
    """Standard empirical risk minimisation on clean inputs."""

    name = "none"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        logits = model(x)
        return training_loss(model, logits, y), logits, 1

    def settings(self) -> dict[str, Any]:
        return {"defense": self.name}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (stored in the checkpoint; a resumed run must match)."""

    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class EpochLog:
    epoch: int
    loss: float
    train_acc: float
    test_acc: float | None
    seconds: float
    passes: int
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    history: list[EpochLog]
    passes: int
    seconds: float
    resumed_from: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"history": [asdict(h) for h in self.history], "passes": self.passes,
                "seconds": self.seconds, "resumed_from": self.resumed_from}


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255) if x.dtype == torch.uint8 else x


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1000) -> float:
    """Clean accuracy of ``model`` (run in its current mode) on uint8 or [0, 1] float images."""
    correct = 0
    for s in range(0, images.shape[0], batch_size):
        xb = _to_float(images[s:s + batch_size])
        correct += int((model(xb).argmax(1) == labels[s:s + batch_size]).sum())
    return correct / max(1, images.shape[0])


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig = TrainConfig(),  # noqa: B008 - frozen dataclass, immutable
    *,
    objective: TrainingObjective | None = None,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    on_batch: Callable[[int, int, int, float, float], None] | None = None,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place.

    Args:
        model: a model from :func:`advlab.models.create_model` (any ``nn.Module`` works
            without checkpointing).
        images: uint8 ``(N, C, H, W)`` images (or floats in [0, 1]).
        labels: int64 labels ``(N,)``.
        config: :class:`TrainConfig`.
        objective: the training loss; clean training by default.
        test: optional held-out ``(images, labels)``; clean accuracy is logged per epoch.
        checkpoint_dir: if given, after every epoch the train state, the weights and
            ``model.json`` are written there atomically.
        resume: continue from ``checkpoint_dir/train_state.safetensors`` (same
            config required). Gives the same weights as an uninterrupted run.
        meta: extra metadata for ``model.json`` (dataset, seed, ...).
        on_batch: ``(epoch, step, steps, loss, acc)`` after every batch (progress bars).
        on_epoch: called with each :class:`EpochLog`.

    Returns:
        The per-epoch history and the total count of forward+backward example passes.
    """
    config.validate()
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise ValueError("cannot train on an empty dataset")
    objective = objective or CleanObjective()
    generator = torch.Generator().manual_seed(config.seed)
    opt = _make_optimizer(model, config)
    history: list[EpochLog] = []
    start_epoch, passes, elapsed = 0, 0, 0.0
    objective_settings = getattr(objective, "settings", lambda: {"defense": objective.name})()
    run_meta = {"train_config": asdict(config), "objective": objective_settings,
                "n_train": int(images.shape[0])}
    run_meta.update(meta or {})

    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume needs a checkpoint directory")
        if not (Path(checkpoint_dir) / STATE_FILE).is_file():
            raise CheckpointError(f"nothing to resume: no {STATE_FILE} in {checkpoint_dir}")
        saved = load_train_state(checkpoint_dir, model, opt, generator)
        saved_cfg = dict(saved.get("train_config", {}), epochs=config.epochs)
        saved["train_config"] = saved_cfg  # more (or fewer) epochs is fine
        for key in ("train_config", "objective", "n_train"):
            if saved.get(key) != run_meta.get(key):
                raise CheckpointError(
                    f"cannot resume: {key} differs from the checkpoint "
                    f"({saved.get(key)} vs {run_meta.get(key)})"
                )
        start_epoch = int(saved["epoch"])
        passes = int(saved["passes"])
        elapsed = float(saved["seconds"])
        history = [EpochLog(**h) for h in saved["history"]]
        log.info("resuming at epoch %d of %d", start_epoch + 1, config.epochs)

    n = images.shape[0]
    steps = (n + config.batch_size - 1) // config.batch_size
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=generator)
        tot_loss, tot_correct, seen, ep_passes = 0.0, 0, 0, 0
        for step in range(steps):
            idx = perm[step * config.batch_size:(step + 1) * config.batch_size]
            xb = _to_float(images[idx])
            yb = labels[idx]
            loss, logits, per_ex = objective(model, xb, yb, generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bs = int(yb.shape[0])
            ep_passes += per_ex * bs
            tot_loss += float(loss.detach()) * bs
            tot_correct += int((logits.detach().argmax(1) == yb).sum())
            seen += bs
            if on_batch is not None:
                on_batch(epoch, step + 1, steps, tot_loss / seen, tot_correct / seen)
        model.eval()
        test_acc = accuracy(model, *test) if test is not None else None
        dt = time.perf_counter() - t0
        passes += ep_passes
        elapsed += dt
        entry = EpochLog(epoch=epoch + 1, loss=tot_loss / seen, train_acc=tot_correct / seen,
                         test_acc=test_acc, seconds=dt, passes=ep_passes)
        history.append(entry)
        if checkpoint_dir is not None:
            state_meta = dict(run_meta, epoch=epoch + 1, passes=passes, seconds=elapsed,
                              history=[asdict(h) for h in history])
            save_train_state(checkpoint_dir, model, opt, generator, state_meta)
            save_model(checkpoint_dir, model, dict(
                run_meta, epochs_done=epoch + 1, passes=passes, seconds=elapsed,
                metrics={"train_loss": entry.loss, "train_acc": entry.train_acc,
                         "test_acc": test_acc},
                history=[asdict(h) for h in history]))
        if on_epoch is not None:
            on_epoch(entry)
    model.eval()
    return TrainResult(history=history, passes=passes, seconds=elapsed,
                       resumed_from=start_epoch)
