"""One robustness evaluation with everything a report needs: :func:`robustness_evaluation`.

It runs the worst-case cascade of :mod:`advlab.evaluation.cascade` (a preset, a list
of attacks, or one :class:`~advlab.attacks.Attack` as a one-stage cascade), an
accuracy-vs-eps curve (the same cascade at other budgets), the gradient-masking
checks, and keeps a few clean/adversarial examples with their predictions. The
result, :class:`RobustnessResult`, is plain data (JSON via :meth:`~RobustnessResult.to_json`);
:mod:`advlab.reporting.robustness` turns it into one HTML file, and ``advlab.evaluate``
is the one-call face of both.

References:
    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", ICML 2020 (arXiv:2003.01690).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.attacks import Attack
from advlab.evaluation.auto import run_cascade
from advlab.evaluation.cascade import CascadeResult, _dist
from advlab.evaluation.checks import CheckWarning
from advlab.evaluation.metrics import predict
from advlab.models.zoo import confidence
from advlab.threat import ThreatModel

__all__ = ["RobustnessResult", "robustness_evaluation", "DEFAULT_CURVE_FACTORS"]

#: default accuracy-vs-eps curve: these multiples of the threat model's eps (0 = clean)
DEFAULT_CURVE_FACTORS = (0.0, 0.25, 0.5, 1.0, 2.0)


@dataclass
class RobustnessResult:
    """Everything one robustness evaluation measured (returned by ``advlab.evaluate``).

    Attributes:
        robust_accuracy: fraction of points classified correctly clean and under every
            attack of the cascade (the per-sample worst case).
        clean_accuracy: fraction classified correctly without attack.
        per_sample: ``{"clean_correct", "robust_correct", "broken_by"}`` tensors of shape
            ``(N,)``; ``broken_by`` is the index of the stage that broke the point, -1 if none.
        stages: one row per attack (attacked, broken, robust accuracy after it, passes).
        curve: ``{"eps": [...], "accuracy": [...]}`` (the same cascade at each eps), or None.
        warnings: the masking checks' flags (code and plain-words message).
        samples: a few examples: ``x``, ``x_adv``, ``labels``, predictions and confidences.
        settings: attacks, seed, batch size, device and anything else needed to rerun.
    """

    model: str
    data: str
    threat: dict[str, Any]
    n_examples: int
    clean_accuracy: float
    robust_accuracy: float
    stages: list[dict[str, Any]]
    warnings: list[CheckWarning]
    curve: dict[str, Any] | None
    classes: list[str]
    settings: dict[str, Any]
    seconds: float
    passes: int
    per_sample: dict[str, torch.Tensor] = field(repr=False)
    samples: dict[str, Any] = field(repr=False, default_factory=dict)
    command: str | None = None

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        """JSON-friendly results (per-sample flags with ``per_sample=True``)."""
        d: dict[str, Any] = {
            "model": self.model, "data": self.data, "threat": self.threat,
            "n_examples": self.n_examples, "clean_acc": self.clean_accuracy,
            "robust_acc": self.robust_accuracy, "stages": self.stages,
            "warnings": [w.to_dict() for w in self.warnings], "curve": self.curve,
            "settings": self.settings, "seconds": self.seconds, "passes": self.passes,
            "command": self.command,
        }
        if per_sample:
            d["per_sample"] = {k: v.tolist() for k, v in self.per_sample.items()}
        return d

    def to_json(self, path: str | Path | None = None, per_sample: bool = False) -> str:
        """The results as a JSON string; with ``path``, also written there atomically."""
        text = json.dumps(self.to_dict(per_sample), indent=2, default=str)
        if path is not None:
            from advlab.io import atomic_write_text

            atomic_write_text(Path(path), text + "\n")
        return text


def _stage_rows(res: CascadeResult) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(s).items() if k not in ("chunks_done", "done")}
            for s in res.stages]


def _curve_eps(threat: ThreatModel, eps_curve: Sequence[float] | None | str) -> list[float]:
    if eps_curve is None or (isinstance(eps_curve, str) and eps_curve.lower() == "none"):
        return []
    if isinstance(eps_curve, str):
        if eps_curve != "default":
            raise ValueError(f"eps_curve must be 'default', None or a list of eps, got {eps_curve!r}")
        return [f * threat.eps for f in DEFAULT_CURVE_FACTORS]
    vals = sorted({float(e) for e in eps_curve})
    if any(not math.isfinite(e) or e < 0 for e in vals):
        raise ValueError(f"eps_curve values must be finite and >= 0, got {list(eps_curve)}")
    return vals


def _run_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
               stages: Any, main: CascadeResult, eps_list: list[float], seed: int,
               batch_size: int) -> dict[str, Any] | None:
    """Worst-case accuracy at every eps (the main run's figure at its own eps)."""
    if not eps_list:
        return None
    acc, passes = [], 0
    for e in eps_list:
        if e == threat.eps:
            acc.append(main.robust_acc)
        elif e == 0:
            acc.append(main.clean_acc)
        else:
            r = run_cascade(model, x, y, stages, ThreatModel(threat.norm, e, threat.bounds), seed=seed,
                        batch_size=batch_size, checks=False)
            acc.append(r.robust_acc)
            passes += r.passes
    return {"eps": eps_list, "accuracy": acc, "passes": passes, "norm": threat.norm}


def _samples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, res: CascadeResult,
             n: int, batch_size: int) -> dict[str, Any]:
    """Up to ``n`` examples of this rank's shard: broken points first, then robust ones."""
    rank, world = _dist()
    shard = torch.tensor_split(torch.arange(int(x.shape[0])), world)[rank]
    broken = res.broken_by[shard] >= 0
    robust = res.robust_correct[shard]
    order = torch.cat([broken.nonzero().squeeze(1), robust.nonzero().squeeze(1)])[:n]
    if res.x_adv is None or not order.numel():
        return {}
    idx = shard[order].to(x.device)
    xs, xa = x[idx], res.x_adv[order].to(x.device)
    with torch.no_grad():
        lc, la = predict(model, xs, batch_size), predict(model, xa, batch_size)
    return {"index": idx.tolist(), "x": xs.detach().cpu(), "x_adv": xa.detach().cpu(),
            "labels": y[idx].tolist(), "clean_pred": lc.argmax(1).tolist(),
            "clean_conf": confidence(model, lc).tolist(), "adv_pred": la.argmax(1).tolist(),
            "adv_conf": confidence(model, la).tolist(),
            "broken_by": res.broken_by[shard][order].tolist()}


def _stages_of(attacks: str | Sequence[str] | Attack) -> tuple[Any, str]:
    if isinstance(attacks, Attack):
        return [(type(attacks).__name__.lower(), attacks)], repr(attacks)
    if isinstance(attacks, str):
        return attacks, attacks
    if isinstance(attacks, Sequence) and all(isinstance(a, str) for a in attacks):
        return list(attacks), ",".join(attacks)
    raise TypeError("attacks must be a preset name ('standard', 'fast', 'autoattack'), a "
                    f"comma-separated list of attack names or an Attack, got {type(attacks).__name__}")


def robustness_evaluation(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, threat: ThreatModel,
    attacks: str | Sequence[str] | Attack = "standard", *, seed: int = 0, batch_size: int = 500,
    eps_curve: Sequence[float] | str | None = "default", classes: Sequence[str] | None = None,
    n_samples: int = 8, state_path: str | Path | None = None, model_name: str = "model",
    data_name: str = "data", settings: dict[str, Any] | None = None,
    on_chunk: Callable[[str, int, int], None] | None = None,
) -> RobustnessResult:
    """Worst-case robust accuracy, stage by stage, plus curve, checks and examples.

    ``model``, ``x`` and ``labels`` must already be on one device (nothing is moved);
    the random draws of every stage come from generators on that device, seeded from
    ``seed`` (so CPU and GPU runs draw different, equally valid, random numbers).
    ``eps_curve``: ``"default"`` (``threat.eps`` times 0, 0.25, 0.5, 1, 2), a list of
    eps, or None for no curve; each extra eps reruns the cascade without checks.
    """
    if not isinstance(threat, ThreatModel):
        raise TypeError("threat must be a ThreatModel, e.g. ThreatModel('linf', 8 / 255)")
    stages, spec = _stages_of(attacks)
    eps_list = _curve_eps(threat, eps_curve)
    t0 = time.perf_counter()
    res = run_cascade(model, x, labels, stages, threat, seed=seed, batch_size=batch_size,
                  state_path=state_path, keep_adversarials=True, on_chunk=on_chunk)
    curve = _run_curve(model, x, labels, threat, stages, res, eps_list, seed, batch_size)
    samples = _samples(model, x, labels, res, n_samples, batch_size)
    n_out = int(predict(model, x[:1]).shape[1]) if x.shape[0] else 0
    names = list(classes) if classes is not None else [str(i) for i in range(n_out)]
    run = {"attacks": spec, "seed": seed, "batch_size": batch_size, "device": str(x.device),
           "eps_curve": eps_list, "world_size": res.world_size, **(settings or {})}
    return RobustnessResult(
        model=model_name, data=data_name, threat=threat.to_dict(), n_examples=res.n_examples,
        clean_accuracy=res.clean_acc, robust_accuracy=res.robust_acc, stages=_stage_rows(res),
        warnings=list(res.warnings), curve=curve, classes=names, settings=run,
        seconds=time.perf_counter() - t0, passes=res.passes + (curve or {}).get("passes", 0),
        per_sample={"clean_correct": res.clean_correct, "robust_correct": res.robust_correct,
                    "broken_by": res.broken_by},
        samples=samples)
