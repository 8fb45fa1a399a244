"""The fit loop: objectives, LR schedules, learning curves, checkpoints, resume and DDP.

The loop is defense-agnostic: it takes a :class:`TrainingObjective` (clean
training by default; adversarial objectives from
:mod:`advlab.defenses.adversarial_training` and :mod:`advlab.defenses.vat` plug
in here), counts the forward+backward example passes the objective spends, and
optionally measures per-epoch learning curves (clean, FGSM and PGD test error at
the training eps). Under ``torchrun`` (an initialised ``torch.distributed``
process group) it trains with ``DistributedDataParallel``: every rank draws the
same permutation, takes its share of each global batch, the attacks run on the
unwrapped module, metrics are all-reduced and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from advlab.checkpoint import (
    STATE_FILE,
    CheckpointError,
    load_train_state,
    save_model,
    save_train_state,
)
from advlab.models.zoo import training_loss

__all__ = ["TrainConfig", "CONFIG_VERSION", "ScheduledTrainConfig", "EpochLog", "TrainResult",
           "TrainingObjective", "CleanObjective", "fit", "accuracy", "CurveConfig", "LRSchedule",
           "LR_SCHEDULES", "learning_curve_point"]

log = logging.getLogger(__name__)

#: learning-rate schedules understood by :class:`TrainConfig` (stepped once per batch)
LR_SCHEDULES = ("constant", "cyclic", "step", "cosine")


class TrainingObjective(Protocol):
    """A training loss: returns ``(mean loss, logits used for accuracy, passes per example)``.

    Objectives with ``semi_supervised = True`` also accept ``unlabeled=`` (a batch of
    unlabelled inputs); called that way, the third value is the *total* number of
    forward+backward example passes of the step.
    """

    name: str

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]: ...


class CleanObjective:
    """Standard empirical risk minimisation on clean inputs."""

    name = "none"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        logits = model(x)
        return training_loss(model, logits, y), logits, 1

    def settings(self) -> dict[str, Any]:
        return {"defense": self.name}

    def __repr__(self) -> str:
        return "CleanObjective()"


#: version of :meth:`TrainConfig.key_dict`; bump it when a field's meaning changes, so that
#: model caches keyed on the config retrain instead of loading a model trained differently
CONFIG_VERSION = 2


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (stored in the checkpoint; a resumed run must match).

    Attributes:
        epochs: passes over the training data.
        batch_size: labelled examples per optimizer step (the global batch under DDP).
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: learning rate (the peak rate of a schedule).
        momentum: SGD momentum.
        weight_decay: L2 weight decay of the optimizer.
        seed: seeds the data order and the objective's generator.
        lr_schedule: ``"constant"``; ``"cyclic"`` (one triangle 0 -> lr -> 0, peaking at
            ``lr_peak`` of training, Smith 2017 as used by Wong et al. 2020); ``"step"``
            (x0.1 at 50% and 75% of training); ``"cosine"`` (Loshchilov & Hutter 2017).
            Stepped once per batch; ``lr`` is the peak rate.
        lr_peak: where the cyclic schedule peaks, as a fraction of training (``(0, 1)``).
        unlabeled_batch_size: unlabelled examples per step in semi-supervised training.
    """

    epochs: int = 1
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    lr_schedule: str = "constant"
    lr_peak: float = 0.4
    unlabeled_batch_size: int = 256

    def validate(self) -> None:
        """Raise :class:`ValueError` on a setting ``fit`` cannot use."""
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0 < self.lr_peak < 1:
            raise ValueError(f"lr_peak must be in (0, 1), got {self.lr_peak}")
        if self.unlabeled_batch_size < 1:
            raise ValueError(f"unlabeled_batch_size must be >= 1, got {self.unlabeled_batch_size}")

    def key_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict for a model cache key, with ``config_version``.

        Model caches hash this (not ``asdict``/``__dict__``), so a change of the fields'
        meaning (a new :data:`CONFIG_VERSION`) never loads a model trained under the old one.
        """
        return {"config_version": CONFIG_VERSION, **asdict(self)}


#: Deprecated alias: the schedule fields are part of :class:`TrainConfig` now.
ScheduledTrainConfig = TrainConfig


class LRSchedule:
    """Per-batch learning-rate schedule; its state (the step count) goes into the checkpoint.

    Args:
        kind: one of :data:`LR_SCHEDULES`.
        lr: peak (base) learning rate.
        total_steps: optimizer steps in the whole run.
        peak: cyclic schedule's peak position as a fraction of training.

    References:
        Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
        Wong, Rice & Kolter, "Fast is better than free", ICLR 2020 (cyclic schedule).
        Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
    """

    def __init__(self, kind: str, lr: float, total_steps: int, peak: float = 0.4) -> None:
        self.kind = kind
        self.lr = lr
        self.total_steps = total_steps
        self.peak = peak
        self.step_count = 0

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based); the position is ``(step + 1) / T``."""
        t = min(1.0, (step + 1) / max(1, self.total_steps))
        if self.kind == "cyclic":
            mult = t / self.peak if t <= self.peak else (1 - t) / (1 - self.peak)
        elif self.kind == "step":
            mult = 1.0 if t <= 0.5 else 0.1 if t <= 0.75 else 0.01
        elif self.kind == "cosine":
            mult = 0.5 * (1 + math.cos(math.pi * (step / max(1, self.total_steps))))
        else:
            mult = 1.0
        return self.lr * mult

    def apply(self, optimizer: torch.optim.Optimizer) -> float:
        """Set the rate of the next step on ``optimizer`` (no-op for ``"constant"``); advance."""
        lr = self.lr_at(self.step_count)
        if self.kind != "constant":
            for g in optimizer.param_groups:
                g["lr"] = lr
        self.step_count += 1
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lr": self.lr, "total_steps": self.total_steps,
                "peak": self.peak, "step_count": self.step_count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = ("kind",) if self.kind == "constant" else ("kind", "total_steps")
        for key in keys:
            if state.get(key) != getattr(self, key):
                raise CheckpointError(f"cannot resume: scheduler {key} differs from the checkpoint "
                                      f"({state.get(key)} vs {getattr(self, key)})")
        self.step_count = int(state["step_count"])


@dataclass(frozen=True)
class CurveConfig:
    """Per-epoch learning curves: clean, FGSM and PGD test error at the training ``eps``.

    Attributes:
        eps: perturbation size of both attacks (normally the training eps).
        norm: threat-model norm.
        pgd_steps: PGD steps (random start, step ``2.5 eps / steps``, early stop).
        n: test examples to use (``None``: all of ``test``).
        seed: seeds the PGD random starts (epoch ``e`` uses ``seed + e``); a separate
            generator, so curves never change the training run.
        batch_size: attack batch size.
    """

    eps: float
    norm: str = "linf"
    pgd_steps: int = 10
    n: int | None = 1000
    seed: int = 0
    batch_size: int = 500

    def validate(self) -> None:
        from advlab.threat import ThreatModel

        ThreatModel(self.norm, self.eps)
        if self.pgd_steps < 1:
            raise ValueError(f"curve pgd_steps must be >= 1, got {self.pgd_steps}")
        if self.n is not None and self.n < 1:
            raise ValueError(f"curve n must be >= 1, got {self.n}")


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

    def curves(self) -> dict[str, list[float]]:
        """The per-epoch series (``epoch``, ``passes``, ``seconds`` cumulative, each extra metric)."""
        out: dict[str, list[float]] = {"epoch": [], "passes": [], "seconds": [], "test_error": []}
        cum_p, cum_s = 0, 0.0
        for h in self.history:
            cum_p += h.passes
            cum_s += h.seconds
            out["epoch"].append(h.epoch)
            out["passes"].append(cum_p)
            out["seconds"].append(cum_s)
            out["test_error"].append(math.nan if h.test_acc is None else 1 - h.test_acc)
            for k, v in h.extra.items():
                out.setdefault(k, []).append(v)
        return out


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def _correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> int:
    correct = 0
    for s in range(0, images.shape[0], batch_size):
        xb = _to_float(images[s:s + batch_size])
        correct += int((model(xb).argmax(1) == labels[s:s + batch_size]).sum())
    return correct


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1000) -> float:
    """Clean accuracy of ``model`` (run in its current mode) on uint8 or [0, 1] float images."""
    return _correct(model, images, labels, batch_size) / max(1, images.shape[0])


def _curve_counts(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  curves: CurveConfig, generator: torch.Generator) -> torch.Tensor:
    """``[n, clean wrong, FGSM robust-wrong, PGD robust-wrong]`` on ``images`` (model in eval mode)."""
    from advlab.attacks import FGSM, PGD
    from advlab.threat import ThreatModel

    threat = ThreatModel(curves.norm, curves.eps)
    x, y = _to_float(images), labels
    n = int(x.shape[0])
    if n == 0:
        return torch.zeros(4, dtype=torch.float64)
    with torch.no_grad():
        clean_ok = torch.cat([model(x[s:s + curves.batch_size]).argmax(1) == y[s:s + curves.batch_size]
                              for s in range(0, n, curves.batch_size)])
    fgsm = FGSM()(model, x, y, threat=threat, batch_size=curves.batch_size)
    pgd = PGD(steps=curves.pgd_steps, rel_step_size=min(1.0, 2.5 / curves.pgd_steps),
              random_init=True, early_stop=True)(model, x, y, threat=threat, generator=generator,
                                                  batch_size=curves.batch_size)
    return torch.tensor([n, int((~clean_ok).sum()), int((~(clean_ok & ~fgsm.success)).sum()),
                         int((~(clean_ok & ~pgd.success)).sum())], dtype=torch.float64)


def learning_curve_point(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         curves: CurveConfig, epoch: int = 0) -> dict[str, float]:
    """Clean, FGSM and PGD test error of ``model`` (in eval mode) at ``curves.eps``.

    Adversarial error counts a point as an error when it is misclassified clean or
    after the attack (1 - robust accuracy, RobustBench convention).

    References:
        Goodfellow, Shlens & Szegedy, arXiv:1412.6572 (2014), Fig. 3 / Sec. 6.
    """
    n = curves.n or images.shape[0]
    gen = torch.Generator(device=images.device).manual_seed(curves.seed + epoch)
    c = _curve_counts(model, images[:n], labels[:n], curves, gen)
    return _errors(c)


def _errors(c: torch.Tensor) -> dict[str, float]:
    n = max(1.0, float(c[0]))
    return {"clean_error": float(c[1]) / n, "fgsm_error": float(c[2]) / n,
            "pgd_error": float(c[3]) / n}


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def _dist_info() -> tuple[bool, int, int]:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


def _all_reduce(t: torch.Tensor, on: bool) -> torch.Tensor:
    if on:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _objective_settings(objective: Any) -> dict[str, Any]:
    return getattr(objective, "settings", lambda: {"defense": objective.name})()


def _config_defaults(saved: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """A stored train config completed with the defaults of fields added since it was written."""
    base = {f.name: f.default for f in fields(config)}
    return dict(base, **saved)


@contextlib.contextmanager
def _epoch_rng(seed: int, epoch: int, rank: int, device: torch.device) -> Iterator[None]:
    """Fork torch's global RNG and seed it for one epoch (restored on exit)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed((seed * 1_000_003 + epoch * 7_919 + rank) % (2**63))
        yield


@dataclass
class _Tally:
    """Running sums of one epoch's training steps (this rank's share until :meth:`reduced`).

    Attributes:
        loss_sum: sum over steps of the mean batch loss times the batch size.
        correct: correctly classified training examples (on the objective's logits).
        seen: training examples.
        passes: forward+backward example passes the objective spent.
    """

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    passes: int = 0

    def add(self, loss: float, correct: int, seen: int, passes: int) -> None:
        """Count one step whose batch of ``seen`` examples had mean loss ``loss``."""
        self.loss_sum += loss * seen
        self.correct += correct
        self.seen += seen
        self.passes += passes

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(1.0, float(self.seen))

    @property
    def accuracy(self) -> float:
        return float(self.correct) / max(1.0, float(self.seen))

    def reduced(self, distributed: bool) -> _Tally:
        """The sums over all ranks (one float64 ``all_reduce``); ``self`` in one process."""
        if not distributed:
            return self
        t = torch.tensor([self.loss_sum, self.correct, self.seen, self.passes], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return _Tally(float(t[0]), int(t[1]), int(t[2]), int(t[3]))


@dataclass
class _Run:
    """The state the epochs of one :func:`fit` call share."""

    config: TrainConfig
    objective: Any
    opt: torch.optim.Optimizer
    schedule: LRSchedule
    generator: torch.Generator  # data order (the same on every rank)
    obj_gen: torch.Generator  # the objective's noise (per rank under DDP or on an accelerator)
    meta: dict[str, Any]  # what the checkpoint stores and a resume must match
    steps: int  # optimizer steps per epoch
    distributed: bool = False
    rank: int = 0
    world: int = 1
    separate: bool = False  # obj_gen is not generator
    history: list[EpochLog] = field(default_factory=list)
    start_epoch: int = 0
    passes: int = 0
    elapsed: float = 0.0


def _check_fit_inputs(config: TrainConfig, images: torch.Tensor, labels: torch.Tensor,
                      objective: TrainingObjective | None, unlabeled: torch.Tensor | None,
                      test: tuple[torch.Tensor, torch.Tensor] | None,
                      curves: CurveConfig | None) -> TrainingObjective:
    """Validate :func:`fit`'s arguments; returns the objective (clean training by default)."""
    config.validate()
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise ValueError("cannot train on an empty dataset")
    objective = objective or CleanObjective()
    validate = getattr(objective, "validate", None)
    if callable(validate):
        validate()
    if unlabeled is not None:
        if not getattr(objective, "semi_supervised", False):
            raise ValueError(f"objective {objective.name!r} cannot use unlabelled data; "
                             "use a semi-supervised objective such as VAT")
        if unlabeled.shape[0] == 0:
            raise ValueError("unlabeled is empty; pass None for supervised training")
        if tuple(unlabeled.shape[1:]) != tuple(images.shape[1:]):
            raise ValueError(f"unlabelled images have shape {tuple(unlabeled.shape[1:])}, "
                             f"labelled ones {tuple(images.shape[1:])}")
    if curves is not None:
        if test is None:
            raise ValueError("learning curves need test data: pass test=(images, labels)")
        curves.validate()
    return objective


def _start_run(model: nn.Module, images: torch.Tensor, config: TrainConfig, objective: Any,
               unlabeled: torch.Tensor | None, curves: CurveConfig | None,
               meta: dict[str, Any] | None) -> _Run:
    """Generators, optimizer, schedule and checkpoint metadata of a fresh run."""
    distributed, rank, world = _dist_info()
    generator = torch.Generator().manual_seed(config.seed)
    # Single process: the objective shares the loop's generator (as always). DDP: every rank
    # draws the same permutations from `generator` and its own attack noise from `obj_gen`
    # (also used, on the data's device, when training on an accelerator).
    separate = distributed or images.device.type != "cpu"
    obj_gen = (torch.Generator(device=images.device).manual_seed(
        config.seed * 1009 + 7919 * (rank + 1)) if separate else generator)
    opt = _make_optimizer(model, config)
    run_meta: dict[str, Any] = {"train_config": asdict(config),
                                "objective": _objective_settings(objective),
                                "n_train": int(images.shape[0])}
    if unlabeled is not None:
        run_meta["n_unlabeled"] = int(unlabeled.shape[0])
    if distributed:
        run_meta["world_size"] = world
    if curves is not None:
        run_meta["curves"] = asdict(curves)
    run_meta.update(meta or {})
    ubs = config.unlabeled_batch_size
    if unlabeled is not None:
        steps = (unlabeled.shape[0] + ubs - 1) // ubs
    else:
        steps = (images.shape[0] + config.batch_size - 1) // config.batch_size
    schedule = LRSchedule(config.lr_schedule, config.lr, steps * config.epochs, config.lr_peak)
    return _Run(config=config, objective=objective, opt=opt, schedule=schedule,
                generator=generator, obj_gen=obj_gen, meta=run_meta, steps=steps,
                distributed=distributed, rank=rank, world=world, separate=separate)


def _resume(run: _Run, model: nn.Module, checkpoint_dir: str | Path | None) -> None:
    """Load ``checkpoint_dir``'s train state into ``model`` and ``run`` after checking it matches.

    A stored train config lacking fields added since it was written matches when the
    run uses their defaults; more epochs than planned are fine unless a schedule depends on it.
    """
    config, kind = run.config, run.config.lr_schedule
    if checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint directory")
    if not (Path(checkpoint_dir) / STATE_FILE).is_file():
        raise CheckpointError(f"nothing to resume: no {STATE_FILE} in {checkpoint_dir}")
    saved = load_train_state(checkpoint_dir, model, run.opt, run.generator)
    saved_cfg = _config_defaults(saved.get("train_config", {}), config)
    if kind != "constant" and saved_cfg.get("epochs") != config.epochs:
        raise CheckpointError(
            f"cannot resume: the {kind} schedule was planned for "
            f"{saved_cfg.get('epochs')} epochs, not {config.epochs}; resume with the same --epochs")
    saved["train_config"] = dict(saved_cfg, epochs=config.epochs)  # more epochs is fine
    keys = ["train_config", "objective", "n_train", "n_unlabeled"]
    if run.distributed or "world_size" in saved:
        keys.append("world_size")
    for key in keys:
        if saved.get(key) != run.meta.get(key):
            raise CheckpointError(
                f"cannot resume: {key} differs from the checkpoint "
                f"({saved.get(key)} vs {run.meta.get(key)})"
            )
    if "scheduler" in saved:
        run.schedule.load_state_dict(saved["scheduler"])
    if run.separate:
        states = saved.get("rank_rng") or []
        if len(states) != run.world:
            raise CheckpointError("cannot resume: the checkpoint holds no generator state "
                                  f"for {run.world} ranks")
        run.obj_gen.set_state(torch.tensor(states[run.rank], dtype=torch.uint8))
    run.start_epoch = int(saved["epoch"])
    run.passes = int(saved["passes"])
    run.elapsed = float(saved["seconds"])
    run.history = [EpochLog(**h) for h in saved["history"]]
    log.info("resuming at epoch %d of %d", run.start_epoch + 1, config.epochs)


def _train_epoch(run: _Run, train_model: nn.Module, epoch: int, images: torch.Tensor,
                 labels: torch.Tensor, unlabeled: torch.Tensor | None,
                 on_batch: Callable[[int, int, int, float, float], None] | None,
                 ) -> tuple[_Tally, float]:
    """One epoch of optimizer steps; returns this rank's tally and the last learning rate."""
    cfg, rank, world = run.config, run.rank, run.world
    n, bsz, ubs = images.shape[0], cfg.batch_size, cfg.unlabeled_batch_size
    train_model.train()
    uperm = None
    if unlabeled is not None:
        uperm = torch.randperm(unlabeled.shape[0], generator=run.generator)
        need = run.steps * bsz
        lperm = torch.cat([torch.randperm(n, generator=run.generator)
                           for _ in range((need + n - 1) // n)])
    else:
        lperm = torch.randperm(n, generator=run.generator)
    tally = _Tally()
    lr_now = cfg.lr
    # Dropout and other layers draw from torch's global RNG. Each epoch runs under a
    # forked global RNG seeded from (seed, epoch, rank): the epoch is reproducible after a
    # resume, and the caller's global RNG state is left exactly as it was.
    with _epoch_rng(cfg.seed, epoch, rank, images.device):
        for step in range(run.steps):
            gidx = lperm[step * bsz:(step + 1) * bsz]
            idx = gidx[rank::world]
            xb = _to_float(images[idx])
            yb = labels[idx]
            lr_now = run.schedule.apply(run.opt)
            if uperm is not None:
                assert unlabeled is not None
                uidx = uperm[step * ubs:(step + 1) * ubs][rank::world]
                loss, logits, step_passes = run.objective(
                    train_model, xb, yb, run.obj_gen, unlabeled=_to_float(unlabeled[uidx]))
            else:
                loss, logits, per_ex = run.objective(train_model, xb, yb, run.obj_gen)
                step_passes = per_ex * int(yb.shape[0])
            bs = int(yb.shape[0])
            scaled = loss * (bs * world / max(1, gidx.shape[0])) if run.distributed else loss
            run.opt.zero_grad(set_to_none=True)
            scaled.backward()
            run.opt.step()
            tally.add(float(loss.detach()), int((logits.detach().argmax(1) == yb).sum()), bs,
                      int(step_passes))
            if on_batch is not None and rank == 0:
                on_batch(epoch, step + 1, run.steps, tally.mean_loss, tally.accuracy)
    return tally, lr_now


def _evaluate(run: _Run, model: nn.Module, test: tuple[torch.Tensor, torch.Tensor] | None,
              curves: CurveConfig | None, epoch: int) -> tuple[float | None, dict[str, float]]:
    """Test accuracy and learning-curve errors of ``model`` (eval mode), sharded over the ranks."""
    if test is None:
        return None, {}
    rank, world = run.rank, run.world
    tx, ty = test[0][rank::world], test[1][rank::world]
    counts = torch.tensor([0.0, 0.0], dtype=torch.float64)
    with torch.no_grad():
        counts[0] = _correct(model, tx, ty, 1000)
    counts[1] = tx.shape[0]
    if curves is not None:
        m = curves.n or test[0].shape[0]
        cx, cy = test[0][:m][rank::world], test[1][:m][rank::world]
        cgen = torch.Generator(device=cx.device).manual_seed(curves.seed + epoch + 1 + 100003 * rank)
        counts = torch.cat([counts, _curve_counts(model, cx, cy, curves, cgen)])
    counts = _all_reduce(counts, run.distributed)
    test_acc = float(counts[0]) / max(1.0, float(counts[1]))
    return test_acc, (_errors(counts[2:]) if curves is not None else {})


def _wrap_ddp(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def _record_epoch(run: _Run, epoch: int, tally: _Tally, test_acc: float | None,
                  extra: dict[str, float], seconds: float) -> EpochLog:
    """Add the (all-reduced) epoch to the run's totals and history; log it."""
    run.passes += tally.passes
    run.elapsed += seconds
    entry = EpochLog(epoch=epoch + 1, loss=tally.mean_loss, train_acc=tally.accuracy,
                     test_acc=test_acc, seconds=seconds, passes=tally.passes, extra=extra)
    run.history.append(entry)
    log.info("epoch %d: loss %.4f, %d passes (%d total) in %.1f s (%.1f s total) %s",
             entry.epoch, entry.loss, tally.passes, run.passes, seconds, run.elapsed, extra)
    return entry


def _save_epoch(run: _Run, model: nn.Module, checkpoint_dir: str | Path | None,
                entry: EpochLog) -> None:
    """Write the train state and the model after an epoch (rank 0; every rank sends its RNG)."""
    if checkpoint_dir is None:
        return
    rank_rng: list[list[int]] | None = None
    if run.separate:
        if run.distributed:
            gathered: list[Any] = [None] * run.world
            dist.all_gather_object(gathered, run.obj_gen.get_state().tolist())
            rank_rng = gathered
        else:
            rank_rng = [run.obj_gen.get_state().tolist()]
    if run.rank != 0:
        return
    history = [asdict(h) for h in run.history]
    state_meta = dict(run.meta, epoch=entry.epoch, passes=run.passes, seconds=run.elapsed,
                      history=history, scheduler=run.schedule.state_dict())
    if rank_rng is not None:
        state_meta["rank_rng"] = rank_rng
    save_train_state(checkpoint_dir, model, run.opt, run.generator, state_meta)
    metrics: dict[str, Any] = {"train_loss": entry.loss, "train_acc": entry.train_acc,
                               "test_acc": entry.test_acc}
    metrics.update(entry.extra)
    save_model(checkpoint_dir, model, dict(
        run.meta, epochs_done=entry.epoch, passes=run.passes, seconds=run.elapsed,
        metrics=metrics, history=history))


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
    unlabeled: torch.Tensor | None = None,
    curves: CurveConfig | None = None,
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
        checkpoint_dir: if given, after every epoch the train state (weights, optimizer,
            scheduler, RNG states, history with curves), the weights and ``model.json``
            are written there atomically (by rank 0 only).
        resume: continue from ``checkpoint_dir/train_state.safetensors`` (same
            config required). Gives the same weights as an uninterrupted run.
        meta: extra metadata for ``model.json`` (dataset, seed, ...).
        on_batch: ``(epoch, step, steps, loss, acc)`` after every batch (progress bars;
            rank 0 only, local batch figures).
        on_epoch: called with each :class:`EpochLog` (rank 0 only).
        unlabeled: optional unlabelled images for a semi-supervised objective (e.g.
            :class:`~advlab.defenses.vat.VAT`). An epoch is then one pass over them in
            batches of ``config.unlabeled_batch_size``, each step paired with a labelled
            batch of ``config.batch_size`` drawn from a reshuffled stream of ``images``.
        curves: per-epoch clean/FGSM/PGD test error on ``test`` (needs ``test``); stored
            in each :class:`EpochLog`'s ``extra``. Uses its own generator: turning curves
            on does not change the trained weights.

    Returns:
        The per-epoch history and the total count of forward+backward example passes.

    Under ``torch.distributed`` (world size > 1), the model is wrapped in
    ``DistributedDataParallel``; pass the same data and settings on every rank.
    """
    objective = _check_fit_inputs(config, images, labels, objective, unlabeled, test, curves)
    run = _start_run(model, images, config, objective, unlabeled, curves, meta)
    if resume:
        _resume(run, model, checkpoint_dir)
    train_model = _wrap_ddp(model) if run.distributed else model
    for epoch in range(run.start_epoch, config.epochs):
        t0 = time.perf_counter()
        tally, lr_now = _train_epoch(run, train_model, epoch, images, labels, unlabeled, on_batch)
        model.eval()
        tally = tally.reduced(run.distributed)
        extra: dict[str, float] = {"lr": lr_now} if config.lr_schedule != "constant" else {}
        test_acc, errors = _evaluate(run, model, test, curves, epoch)
        extra.update(errors)
        entry = _record_epoch(run, epoch, tally, test_acc, extra, time.perf_counter() - t0)
        _save_epoch(run, model, checkpoint_dir, entry)
        if run.distributed:
            dist.barrier()
        if on_epoch is not None and run.rank == 0:
            on_epoch(entry)
    model.eval()
    return TrainResult(history=run.history, passes=run.passes, seconds=run.elapsed,
                       resumed_from=run.start_epoch)
