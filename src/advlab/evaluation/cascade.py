"""The worst case over attacks: a resumable cascade from cheap to expensive attacks.

Each stage attacks only the points that every earlier stage left robust, so
the robust accuracy after a stage is the per-sample worst case over all
stages so far, and the expensive attacks run on few points (Croce & Hein's
AutoAttack runs its four attacks the same way).

The run is resumable: after every chunk of points the state (per-sample
flags, kept adversarial inputs, stage logs) is written atomically to a
state file; rerunning with the same file skips finished work and, because
every chunk draws its randomness from a generator seeded by
``(seed, stage, chunk)``, gives exactly the answer of an uninterrupted run.

Under ``torch.distributed`` (e.g. ``torchrun --nproc_per_node=N``) every
rank evaluates one contiguous shard (``torch.tensor_split``, so shards
differ by at most one point and cover every point once) and the counts are
summed with ``all_reduce``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.attacks import Attack, attack_names, get_entry
from advlab.criteria import Misclassification
from advlab.evaluation.checks import (
    GRADIENT_FREE,
    CheckWarning,
    check_black_box,
    check_model,
    check_threat,
)
from advlab.evaluation.metrics import predict
from advlab.io import atomic_write_bytes
from advlab.threat import ThreatModel
from advlab.validation import check_inputs, check_logits, eval_mode

__all__ = ["CascadeResult", "StageLog", "cascade", "is_state_file", "make_stages", "PRESETS"]

log = logging.getLogger(__name__)

#: named cascades (cheap to expensive)
PRESETS: dict[str, list[str]] = {
    # APGD-CE, targeted APGD-DLR on the 3 most likely wrong classes, Square with 2000
    # queries: AutoAttack's recipe at a fraction of its cost per robust point. (Square with
    # 1000 queries left an FGSM-RS MNIST model 0.4 points above AutoAttack, whose Square
    # stage found masked points that the gradient stages missed: docs/evaluation.md.)
    "standard": ["apgd-ce", "apgd-t3", "square2k"],
    # gradient attacks only (no black-box check): FGSM, APGD-CE, APGD-T on 3 classes
    "fast": ["fgsm", "apgd-ce", "apgd-t3"],
    # AutoAttack's standard ensemble: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000)
    "autoattack": ["apgd-ce", "apgd-t", "fab-t", "square"],
    # adaptive (advlab.evaluation.auto): these stages at most; APGD-CE on every point,
    # APGD-T3, FAB-T3 and Square (2000) on margin bands of the robust points, smallest margins
    # first, band after band while they break points (Square then once more on its bands);
    # Square (5000) on all if a check fires
    "auto": ["apgd-ce", "apgd-t3", "fab-t3", "square2k", "square"],
}


def make_stages(spec: str | Sequence[str]) -> list[tuple[str, Attack]]:
    """Stages from a preset name (``standard``, ``fast``) or a list of attack names.

    ``spec`` may be a comma-separated string, e.g. ``"fgsm,apgd-ce,square"``.
    """
    if isinstance(spec, str):
        names = PRESETS.get(spec.strip().lower()) or [s.strip().lower() for s in spec.split(",")
                                                      if s.strip()]
    else:
        names = [s.lower() for s in spec]
    if not names:
        raise ValueError("no attacks given; use a preset (standard, fast) or a list such as "
                         "apgd-ce,apgd-t,square")
    entries = []
    for nm in names:
        try:
            entries.append(get_entry(nm))
        except ValueError as e:  # noqa: PERF203
            raise ValueError(f"unknown cascade attack {nm!r}: use a preset "
                             f"({', '.join(sorted(PRESETS))}) or registered attacks "
                             f"({', '.join(attack_names())})") from e
    # every stage stops per sample once broken (same verdict, less work)
    return [(nm, e.create(**({"early_stop": True} if e.takes("early_stop") else {})))
            for nm, e in zip(names, entries, strict=True)]


@dataclass
class StageLog:
    """One stage of the cascade (counts over all shards)."""

    name: str
    attack: dict[str, Any]
    attacked: int = 0
    broken: int = 0
    robust_acc: float = math.nan
    seconds: float = 0.0
    passes: int = 0
    forwards: int = 0
    chunks_done: int = 0
    done: bool = False


@dataclass
class CascadeResult:
    """Outcome of :func:`cascade`.

    ``robust_correct`` is true where the point is classified correctly clean
    and no stage found an allowed adversarial input; ``broken_by`` names the
    stage index that broke a point (-1: not broken). ``x_adv`` holds the kept
    adversarial input per point (the clean input where none was found).
    """

    clean_acc: float
    robust_acc: float
    n_examples: int
    threat: dict[str, Any]
    stages: list[StageLog]
    warnings: list[CheckWarning]
    seconds: float
    passes: int
    forwards: int
    seed: int
    resumed: bool
    world_size: int
    clean_correct: torch.Tensor = field(repr=False)
    robust_correct: torch.Tensor = field(repr=False)
    broken_by: torch.Tensor = field(repr=False)
    x_adv: torch.Tensor | None = field(repr=False, default=None)
    #: per point, the smallest logit margin (true class minus best other) at any stage's
    #: returned input inside the threat model (``inf``: never attacked); ``auto`` ranks by it
    margin: torch.Tensor | None = field(repr=False, default=None)
    plan: list[str] = field(default_factory=list)  #: what ``auto`` decided to run, in words

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "clean_acc": self.clean_acc,
            "robust_acc": self.robust_acc,
            "n_examples": self.n_examples,
            "threat_model": self.threat["norm"],
            "eps": self.threat["eps"],
            "threat": self.threat,
            "stages": [asdict(s) for s in self.stages],
            "warnings": [w.to_dict() for w in self.warnings],
            "seconds": self.seconds,
            "passes": self.passes,
            "forwards": self.forwards,
            "seed": self.seed,
            "resumed": self.resumed,
            "world_size": self.world_size,
        }
        if self.plan:
            d["plan"] = list(self.plan)
        if per_sample:
            d["clean_correct"] = self.clean_correct.int().tolist()
            d["robust_correct"] = self.robust_correct.int().tolist()
            d["broken_by"] = self.broken_by.tolist()
        return d


def _chunk_seed(seed: int, stage: int, chunk: int) -> int:
    h = hashlib.sha256(f"advlab-cascade:{seed}:{stage}:{chunk}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def _fingerprint(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
                 stages: list[tuple[str, Attack]], seed: int, batch_size: int,
                 shard: tuple[int, int]) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(labels.cpu().numpy().tobytes())
    h.update(json.dumps({"threat": threat.to_dict(), "stages": [(n, repr(a)) for n, a in stages],
                         "seed": seed, "batch_size": batch_size, "shard": list(shard)},
                        sort_keys=True).encode())
    return h.hexdigest()


class _State:
    """Per-sample cascade state, saved atomically as one safetensors file."""

    def __init__(self, n: int, x: torch.Tensor, stages: list[tuple[str, Attack]],
                 path: Path | None = None, fingerprint: str = "") -> None:
        self.path, self.fingerprint = path, fingerprint
        self.clean_correct = torch.zeros(n, dtype=torch.bool)
        self.robust = torch.zeros(n, dtype=torch.bool)
        self.broken_by = torch.full((n,), -1, dtype=torch.long)
        self.x_adv = x.detach().cpu().clone()
        # smallest logit margin (true class minus the best other) any stage reached at the
        # point it returned; inf where no stage attacked the point. ``auto`` ranks by it.
        self.margin = torch.full((n,), math.inf)
        self.todo: dict[int, torch.Tensor] = {}
        self.logs = [StageLog(name, a.settings()) for name, a in stages]
        self.clean_done = False
        self.warnings: list[CheckWarning] = []  # raised while attacking (kept across resumes)

    def checkpoint(self) -> None:
        """Save to :attr:`path` (if any) under :attr:`fingerprint`."""
        if self.path is not None:
            self.save(self.path, self.fingerprint)

    def save(self, path: Path, fingerprint: str) -> None:
        from safetensors.torch import save

        tensors = {"clean_correct": self.clean_correct.to(torch.uint8),
                   "robust": self.robust.to(torch.uint8), "broken_by": self.broken_by,
                   "x_adv": self.x_adv.contiguous(), "margin": self.margin.contiguous()}
        for s, t in self.todo.items():
            tensors[f"todo_{s}"] = t.contiguous()
        meta = {"fingerprint": fingerprint, "clean_done": json.dumps(self.clean_done),
                "logs": json.dumps([asdict(lg) for lg in self.logs]),
                "warnings": json.dumps([w.to_dict() for w in self.warnings])}
        atomic_write_bytes(path, save(tensors, metadata=meta))

    def load(self, path: Path, fingerprint: str) -> bool:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("fingerprint") != fingerprint:
                    raise ValueError(
                        f"the state file {path} belongs to a different evaluation (model, data, "
                        "threat model, attacks, seed or batch size changed); delete it or choose "
                        "another state file")
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except ValueError:
            raise
        except Exception as e:  # unreadable file: start over rather than trust it
            log.warning("ignoring unreadable cascade state %s: %s", path, e)
            return False
        self.clean_correct = tensors["clean_correct"].bool()
        self.robust = tensors["robust"].bool()
        self.broken_by = tensors["broken_by"]
        self.x_adv = tensors["x_adv"]
        if "margin" in tensors:  # state files written before margins were kept have none
            self.margin = tensors["margin"].float()
        self.todo = {int(k.split("_")[1]): v for k, v in tensors.items() if k.startswith("todo_")}
        self.clean_done = json.loads(meta["clean_done"])
        self.logs = [StageLog(**d) for d in json.loads(meta["logs"])]
        self.warnings = [CheckWarning(**d) for d in json.loads(meta.get("warnings", "[]"))]
        return True


def is_state_file(path: str | Path) -> bool:
    """Whether ``path`` is a cascade state file (safetensors with a cascade fingerprint)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # not safetensors at all (or unreadable)
        return False
    return {"fingerprint", "clean_done", "logs"} <= meta.keys()


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _stage_list(stages: str | Sequence[str] | Sequence[tuple[str, Attack]]) -> list[tuple[str, Attack]]:
    """``(name, attack)`` pairs from a preset, names or pairs; at least one."""
    if isinstance(stages, str) or (stages and isinstance(next(iter(stages)), str)):
        stage_list = make_stages(stages)  # type: ignore[arg-type]
    else:
        stage_list = list(stages)  # type: ignore[arg-type]
    if not stage_list:
        raise ValueError("a cascade needs at least one attack")
    return stage_list


def _open_state(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, threat: ThreatModel,
                stage_list: list[tuple[str, Attack]], seed: int, batch_size: int, rank: int,
                world: int, state_path: str | Path | None,
                overwrite: bool = False) -> tuple[_State, bool]:
    """This shard's state: loaded from ``state_path`` if it holds this evaluation, else fresh."""
    path = Path(state_path) if state_path is not None else None
    if path is not None and world > 1:
        path = path.with_name(f"{path.name}.rank{rank}of{world}")
    if path is not None and path.exists() and not overwrite and not is_state_file(path):
        raise ValueError(f"the state file {path} exists and is not a cascade state file; choose "
                         "another file or pass overwrite=True (--overwrite) to replace it")
    fp = _fingerprint(model, xs, ys, threat, stage_list, seed, batch_size, (rank, world))
    state = _State(int(xs.shape[0]), xs, stage_list, path=path, fingerprint=fp)
    resumed = bool(path is not None and path.is_file() and state.load(path, fp))
    if resumed:
        log.info("resuming cascade from %s", path)
    return state, resumed


def _clean_pass(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, state: _State,
                batch_size: int) -> None:
    """Clean predictions (once per state): the points every stage starts from."""
    if state.clean_done:
        return
    state.clean_correct = (predict(model, xs, batch_size).argmax(1) == ys).cpu()
    state.robust = state.clean_correct.clone()
    state.clean_done = True
    state.checkpoint()


def _attack_chunk(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, threat: ThreatModel,
                  state: _State, s: int, attack: Attack, idx: torch.Tensor, seed: int, c: int,
                  batch_size: int) -> None:
    """Attack the points ``idx`` (chunk ``c`` of stage ``s``) and record the broken ones."""
    lg = state.logs[s]
    dev = xs.device
    t0 = time.perf_counter()
    gen = torch.Generator(device=dev).manual_seed(_chunk_seed(seed, s, c))
    xi = xs[idx.to(dev)]
    crit = Misclassification(ys[idx.to(dev)])
    res = attack(model, xi, crit, threat=threat, generator=gen, batch_size=batch_size)
    inside = threat.contains(res.x_adv, xi)
    with torch.no_grad():
        margin = torch.where(inside, -crit.loss(res.logits.detach(), "cw"),
                             torch.full_like(res.logits[:, 0], math.inf)).float().cpu()
    state.margin[idx] = torch.minimum(state.margin[idx], margin)
    ok = res.success & inside
    if attack.bounded and bool((res.success & ~inside).any()):
        state.warnings += check_threat(threat, res.x_adv[res.success], xi[res.success])
    broke = idx[ok.cpu()]
    state.robust[broke] = False
    state.broken_by[broke] = s
    state.x_adv[broke] = res.x_adv[ok].detach().cpu()
    lg.broken += int(ok.sum())
    lg.passes += int(res.passes.sum())
    lg.forwards += int(res.forwards.sum())
    lg.seconds += time.perf_counter() - t0
    lg.chunks_done = c + 1


def _run_stage(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, threat: ThreatModel,
               state: _State, s: int, name: str, attack: Attack, seed: int, batch_size: int,
               on_chunk: Callable[[str, int, int], None] | None) -> None:
    """Stage ``s`` on the points still robust when it started; saves after every chunk."""
    lg = state.logs[s]
    if lg.done:
        return
    if s not in state.todo:
        state.todo[s] = state.robust.nonzero().squeeze(1)
        lg.attacked = int(state.todo[s].numel())
        state.checkpoint()
    todo = state.todo[s]
    chunks = torch.split(todo, batch_size) if todo.numel() else ()
    for c in range(lg.chunks_done, len(chunks)):
        _attack_chunk(model, xs, ys, threat, state, s, attack, chunks[c], seed, c, batch_size)
        state.checkpoint()
        if on_chunk is not None:
            on_chunk(name, min((c + 1) * batch_size, len(todo)), len(todo))
    lg.done = True
    lg.robust_acc = int(state.robust.sum()) / max(1, int(xs.shape[0]))
    state.checkpoint()


def _final_check(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, threat: ThreatModel,
                 state: _State, batch_size: int) -> list[CheckWarning]:
    """Re-check every kept perturbation: allowed and still misclassified, else not broken."""
    warnings_: list[CheckWarning] = []
    dev = xs.device
    broken = (state.broken_by >= 0).nonzero().squeeze(1)
    if not broken.numel():
        return warnings_
    xb = state.x_adv[broken].to(dev)
    x0 = xs[broken.to(dev)]
    warnings_ += check_threat(threat, xb, x0)
    inside = threat.contains(xb, x0).cpu()
    still = (predict(model, xb, batch_size).argmax(1) != ys[broken.to(dev)]).cpu()
    bad = broken[~(inside & still)]
    if bad.numel():
        if bool((inside & ~still).any()):
            warnings_.append(CheckWarning(
                "not_reproducible", f"{int((inside & ~still).sum())} kept adversarial "
                "inputs are classified correctly when re-evaluated (randomized model or "
                "numerical ties); they are not counted as broken"))
        state.robust[bad] = state.clean_correct[bad]
        state.broken_by[bad] = -1
        state.x_adv[bad] = xs[bad.to(dev)].detach().cpu()
    return warnings_


def _attack_shard(model: nn.Module, x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor,
                  crit_all: Misclassification, threat: ThreatModel, state: _State,
                  stage_list: list[tuple[str, Attack]], seed: int, batch_size: int, checks: bool,
                  on_chunk: Callable[[str, int, int], None] | None) -> list[CheckWarning]:
    """Checks, clean pass, every stage and the final check on this rank's shard (eval mode)."""
    warnings_: list[CheckWarning] = []
    n_total = int(x.shape[0])
    with eval_mode(model, "evaluation"):
        if n_total:
            with torch.no_grad():
                check_logits(model(x[: min(2, n_total)]), min(2, n_total))
        crit_all.validate(n_total, 2 if not n_total else int(predict(model, x[:1]).shape[1]))
        if checks and int(xs.shape[0]):
            warnings_ += check_model(model, xs, ys)
        _clean_pass(model, xs, ys, state, batch_size)
        for s, (name, attack) in enumerate(stage_list):
            _run_stage(model, xs, ys, threat, state, s, name, attack, seed, batch_size, on_chunk)
        warnings_ += state.warnings
        warnings_ += _final_check(model, xs, ys, threat, state, batch_size)
    return warnings_


def _merge_shards(state: _State, n: int, world: int
                  ) -> tuple[list[int], list[StageLog], list[torch.Tensor]]:
    """Counts over all ranks: ``([n, clean, robust], stage logs, [clean, robust, broken_by])``.

    Stage counts are summed (``all_reduce``), stage seconds are the slowest rank's, and the
    per-sample flags are gathered in shard order.
    """
    counts = [n, int(state.clean_correct.sum()), int(state.robust.sum())]
    for lg in state.logs:
        counts += [lg.attacked, lg.broken, lg.passes, lg.forwards]
    ct = torch.tensor(counts, dtype=torch.long)
    flags = [state.clean_correct, state.robust, state.broken_by, state.margin]
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(ct)
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, [f.tolist() for f in flags])
        flags = [torch.tensor(sum((g[i] for g in gathered), [])) for i in range(len(flags))]
        secs = torch.tensor([lg.seconds for lg in state.logs], dtype=torch.float64)
        dist.all_reduce(secs, op=dist.ReduceOp.MAX)
        for lg, sv in zip(state.logs, secs.tolist(), strict=True):
            lg.seconds = sv
    c = ct.tolist()
    n_all, clean_all = c[0], c[1]
    logs = []
    robust_after = clean_all
    for i, lg in enumerate(state.logs):
        a, b, p, f = c[3 + 4 * i: 7 + 4 * i]
        robust_after -= b
        logs.append(StageLog(lg.name, lg.attack, a, b, robust_after / max(1, n_all), lg.seconds,
                             p, f, lg.chunks_done, lg.done))
    return c[:3], logs, flags


def cascade(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    stages: str | Sequence[str] | Sequence[tuple[str, Attack]],
    threat: ThreatModel,
    *,
    seed: int = 0,
    batch_size: int = 500,
    state_path: str | Path | None = None,
    checks: bool = True,
    keep_adversarials: bool = False,
    on_chunk: Callable[[str, int, int], None] | None = None,
    overwrite: bool = False,
) -> CascadeResult:
    """Robust accuracy under the per-sample worst case of a sequence of attacks.

    Args:
        model: classifier returning logits on inputs in ``threat.bounds``.
        x: inputs ``(N, ...)``; labels: int64 ``(N,)``.
        stages: a preset (``"standard"``, ``"fast"``, ``"autoattack"``; for ``"auto"``,
            the adaptive cascade, use :func:`advlab.evaluation.run_cascade`), a comma-separated string or
            list of names (see :func:`make_stages`), or ``(name, attack)`` pairs.
            Unbounded attacks (CW, DeepFool) count a point as broken only if their
            perturbation lies inside the threat model.
        threat: the threat model.
        seed: seeds one generator per (stage, chunk); the answer depends only on it.
        batch_size: points per chunk (the unit of work between state saves).
        state_path: resumable state file (safetensors); created if missing, resumed
            if present. Under ``torch.distributed`` each rank appends
            ``.rank<r>of<N>`` to it.
        checks: run the gradient-masking checks of :mod:`advlab.evaluation.checks`.
        keep_adversarials: return the kept adversarial inputs (this rank's shard).
        on_chunk: progress callback ``(stage name, points done, points to do)``.
        overwrite: replace an existing ``state_path`` that is not a cascade state
            file (without it such a file is a ``ValueError``, never silently replaced).

    Returns:
        :class:`CascadeResult` with counts summed over all ranks.

    References:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an
        ensemble of diverse parameter-free attacks", ICML 2020 (arXiv:2003.01690).
    """
    if not isinstance(threat, ThreatModel):
        raise TypeError("threat must be a ThreatModel, e.g. ThreatModel('linf', 0.3)")
    if isinstance(stages, str) and stages.strip().lower() == "auto":
        raise ValueError("'auto' decides its stages as it runs: call advlab.evaluation.run_cascade "
                         "(any preset) or advlab.evaluation.auto_cascade")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stage_list = _stage_list(stages)
    check_inputs(model, x, threat.bounds)
    crit_all = Misclassification(labels)
    rank, world = _dist()
    n_total = int(x.shape[0])
    shard_idx = torch.tensor_split(torch.arange(n_total), world)[rank]
    xs, ys = x[shard_idx.to(x.device)], labels[shard_idx.to(labels.device)]
    n = int(xs.shape[0])
    t_start = time.perf_counter()
    state, resumed = _open_state(model, xs, ys, threat, stage_list, seed, batch_size, rank, world,
                                 state_path, overwrite)
    warnings_ = _attack_shard(model, x, xs, ys, crit_all, threat, state, stage_list, seed,
                              batch_size, checks, on_chunk)
    (n_all, clean_all, robust_all), logs, flags = _merge_shards(state, n, world)
    if checks:
        warnings_ += check_black_box([lg.name for lg in logs],
                                     [type(a).__name__ in GRADIENT_FREE for _, a in stage_list],
                                     [lg.broken for lg in logs])
    # robust after the final check can only be >= the stage count (reverted points)
    return CascadeResult(
        clean_acc=clean_all / n_all if n_all else math.nan,
        robust_acc=robust_all / n_all if n_all else math.nan,
        n_examples=n_all, threat=threat.to_dict(), stages=logs, warnings=warnings_,
        seconds=time.perf_counter() - t_start,  # this run; stage seconds add up over resumes
        passes=sum(lg.passes for lg in logs), forwards=sum(lg.forwards for lg in logs),
        seed=seed, resumed=resumed, world_size=world,
        clean_correct=flags[0].bool(), robust_correct=flags[1].bool(), broken_by=flags[2].long(),
        margin=flags[3].float(), x_adv=state.x_adv if keep_adversarials else None,
    )
