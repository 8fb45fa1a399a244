"""The lecture's cross sections, decision maps, noise and physical-world slides on real photos.

All experiments read :meth:`~advlab.experiments.ExperimentContext.photos` (EfficientNet-Lite0
and the 20 foolbox ImageNet photos, or a test stand-in) and count passes, because on this CPU
one forward+backward of EfficientNet over 20 photos costs 1-3 s:

* ``photo-cross-section``: 1 gradient per photo, then ``2 * steps`` forward images per photo.
* ``photo-decision-map``: 1 gradient, then ``2 * resolution**2`` forward images.
* ``photo-noise``: ``6 * n`` forward images and one targeted FGSM step over ``n`` noise images.
* ``photo-physical``: FGSM, BIM and ILLC (``1 + 2 * steps`` passes per eps) on the photos.

References:
    Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
    Warde-Farley & Goodfellow, "Adversarial Perturbations of Deep Neural Networks", 2016.
    Kurakin, Goodfellow & Bengio, "Adversarial examples in the physical world", arXiv:1607.02533.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from advlab import analysis as an
from advlab.analysis.cross_section import activation_patterns, count_linear_pieces
from advlab.attacks import FGSM
from advlab.criteria import TargetedMisclassification
from advlab.experiments.analysis import AnalysisRun, _rounded, register_analysis
from advlab.experiments.context import ExperimentContext
from advlab.physical import destruction_experiment, physical_attacks, print_and_photograph
from advlab.threat import ThreatModel
from advlab.validation import eval_mode

__all__ = ["PhotoCrossSectionRun", "PhotoDecisionMapRun", "PhotoNoiseRun", "PhotoPhysicalRun",
           "photo_cross_section", "noise_share", "run_photo_cross_section", "run_photo_decision_map",
           "run_photo_noise", "run_photo_physical", "PUBLISHED_PHYSICAL"]

#: Kurakin et al. (2016), table 3, photographed images, average case, top-1 destruction rate
PUBLISHED_PHYSICAL = {16: {"fgsm": 0.125, "bim": 0.404, "illc": 0.722},
                      8: {"fgsm": 0.333, "bim": 0.521, "illc": 0.863}}


@dataclass
class PhotoCrossSectionRun(AnalysisRun):
    """:func:`run_photo_cross_section`: one cross section per (photo, direction)."""

    sections: list[an.CrossSection]
    titles: list[str]
    classes: Sequence[str]


@dataclass
class PhotoDecisionMapRun(AnalysisRun):
    """:func:`run_photo_decision_map`: the maps of each kind around one photo."""

    maps: dict[str, an.DecisionMaps]
    classes: Sequence[str]


@dataclass
class PhotoNoiseRun(AnalysisRun):
    """:func:`run_photo_noise`: top-class shares of noise images per (kind, size)."""


@dataclass
class PhotoPhysicalRun(AnalysisRun):
    """:func:`run_photo_physical`: destruction rates under the print-and-photograph preset."""


def photo_cross_section(model: nn.Module, x: torch.Tensor, direction: torch.Tensor, *, span: float,
                        steps: int, label: int = -1, batch_size: int = 20) -> an.CrossSection:
    """:func:`advlab.analysis.cross_section` that keeps one activation pattern at a time.

    ``cross_section`` stores every sample's pattern (int64 per ReLU unit: ~64 MB per 224x224
    EfficientNet image), so on photos the pieces are counted batch by batch, comparing each
    pattern only with the previous one. Same numbers, same references (Goodfellow et al. 2015).
    """
    if direction.shape != x.shape:
        raise ValueError(f"direction has shape {tuple(direction.shape)} but x has {tuple(x.shape)}")
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    t = torch.linspace(-span, span, steps, dtype=x.dtype)
    logits, breaks, units, prev = [], [], 0, None
    with eval_mode(model, "analysis"):
        for s in range(0, steps, batch_size):
            pts = x[None] + t[s:s + batch_size].reshape(-1, *([1] * x.ndim)) * direction[None]
            lg, pat = activation_patterns(model, pts)
            logits.append(lg)
            units = int(pat.shape[1])
            both = pat if prev is None else torch.cat([prev, pat])
            _, idx = count_linear_pieces(both)
            off = s - (0 if prev is None else 1)
            breaks += [float((t[off + i] + t[off + i + 1]) / 2) for i in idx.tolist()]
            prev = pat[-1:]
    z = torch.cat(logits)
    tail = t >= span / 2
    tt, zz = t[tail].double(), z[tail].double()
    tc, zc = tt - tt.mean(), zz - zz.mean(0)
    slope = (tc[:, None] * zc).sum(0) / tc.pow(2).sum().clamp_min(1e-30)
    ss = zc.pow(2).sum(0)
    r2 = torch.where(ss > 1e-12, 1 - (zc - slope * tc[:, None]).pow(2).sum(0) / ss.clamp_min(1e-30),
                     torch.ones_like(ss))
    return an.CrossSection(t=t, logits=z, direction=direction.clone(), label=int(label),
                           predicted=z.argmax(1), n_pieces=1 + len(breaks), breakpoints=breaks,
                           n_units=units, tail_slope=slope.float(), tail_r2=r2.float())


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 20) -> torch.Tensor:
    with torch.no_grad(), eval_mode(model, "analysis"):
        return torch.cat([model(x[s:s + batch]).argmax(1) for s in range(0, len(x), batch)]) == y


def run_photo_cross_section(ctx: ExperimentContext, n: int | None = None, span: float = 0.5,
                            steps: int | None = None) -> PhotoCrossSectionRun:
    """Logits along FGSM and a random sign direction (equal max norm) through 1-2 photos."""
    ps = ctx.photos()
    n = n or (1 if ctx.quick else 2)
    steps = steps or (41 if ctx.quick else 81)
    x, y = ps.tensors()
    ok = _correct(ps.model, x, y).nonzero().squeeze(1)
    idx = (ok if ok.numel() else torch.arange(len(y)))[:n]
    d_fgsm = an.fgsm_direction(ps.model, x[idx], y[idx])
    g = ctx.generator()
    secs, titles, rows = [], [], []
    classes = ps.classes
    for j, i in enumerate(idx.tolist()):
        lab = int(y[i])
        d_rand = an.random_sign_direction(x[i].shape, generator=g)
        for name, d in (("FGSM", d_fgsm[j]), ("random +-1", d_rand)):
            cs = photo_cross_section(ps.model, x[i], d, span=span, steps=steps, label=lab)
            secs.append(cs)
            titles.append(f"{classes[lab]}, {name} direction")
            half = steps // 2
            flip = (cs.predicted[half:] != lab).nonzero()
            end = int(cs.predicted[-1])
            rows.append({"photo": classes[lab], "direction": name, "pieces": cs.n_pieces, "units": cs.n_units,
                         "first_flip_t": float(cs.t[half + int(flip[0])]) if flip.numel() else None,
                         "pred_at_end": classes[end], "end_class_tail_r2": float(cs.tail_r2[end]),
                         "wrong_at_end": end != lab})
    data = {"span": span, "span_255": span * 255, "steps": steps, "model": ps.model_name,
            "n": int(idx.numel()), "rows": rows}
    return PhotoCrossSectionRun(_rounded(data), secs, titles, classes)


def _winners(preds: torch.Tensor, classes: Sequence[str], k: int = 4) -> list[dict[str, Any]]:
    cnt = torch.bincount(preds.flatten(), minlength=len(classes)).float() / preds.numel()
    top = cnt.argsort(descending=True)[:k]
    return [{"class": classes[int(c)], "share": float(cnt[c])} for c in top if cnt[c] > 0]


def run_photo_decision_map(ctx: ExperimentContext, resolution: int | None = None,
                           eps: float = 32 / 255) -> PhotoDecisionMapRun:
    """Warde-Farley & Goodfellow maps around one photo: adversarial x random and random x random."""
    ps = ctx.photos()
    resolution = resolution or (9 if ctx.quick else 15)
    x, y = ps.tensors()
    ok = _correct(ps.model, x, y).nonzero().squeeze(1)
    i = int(ok[0]) if ok.numel() else 0
    rows, maps = [], {}
    for kind in ("adversarial-random", "random-random"):
        m = an.decision_maps(ps.model, x[i:i + 1], y[i:i + 1], kind=kind, eps=eps, resolution=resolution,
                             generator=ctx.generator(), batch_size=25)
        maps[kind] = m
        rows.append({"kind": kind, "misclassified": m.mean_misclassified,
                     "winners": _winners(m.predictions, ps.classes)})
    data = {"photo": ps.classes[int(y[i])], "resolution": resolution, "eps": eps, "eps_255": eps * 255,
            "images": 2 * resolution ** 2, "model": ps.model_name, "rows": rows}
    return PhotoDecisionMapRun(_rounded(data), maps, ps.classes)


def noise_share(model: nn.Module, z: torch.Tensor, k: int, batch: int = 20) -> tuple[torch.Tensor, float]:
    """Share of the images ``z`` predicted as each of ``k`` classes, and the mean max softmax."""
    with torch.no_grad(), eval_mode(model, "analysis"):
        lg = torch.cat([model(z[s:s + batch]) for s in range(0, len(z), batch)])
    share = torch.bincount(lg.argmax(1), minlength=k).float() / len(z)
    return share, float(torch.softmax(lg, 1).amax(1).mean())


def run_photo_noise(ctx: ExperimentContext, n: int | None = None,
                    sizes: tuple[float, ...] = (0.1, 0.3, 1.0), eps: float = 16 / 255,
                    target: int | None = None) -> PhotoNoiseRun:
    """Gaussian and uniform noise images through the photo model (Goodfellow et al. 2015, sec. 10).

    ``sizes`` are Gaussian standard deviations; the uniform noise has the same per-pixel standard
    deviation (half-width ``sqrt(3) * size``), both around grey and clipped to [0, 1]. Then one
    targeted FGSM step of ``eps`` from the largest Gaussian noise towards ``target`` (default:
    the first class name containing "airliner", else class 0).
    """
    ps = ctx.photos()
    n = n or (20 if ctx.quick else 40)
    shape = tuple(ps.photos.images.shape[1:])
    k = len(ps.classes)
    g = ctx.generator()
    rows, last = [], None
    for kind in ("gaussian", "uniform"):
        for s in sizes:
            if kind == "gaussian":
                z = an.gaussian_noise(n, shape, s, generator=g)
                last = z
            else:
                z = (0.5 + math.sqrt(3) * s * (2 * torch.rand((n, *shape), generator=g) - 1)).clamp(0, 1)
            share, conf = noise_share(ps.model, z, k)
            top = share.argsort(descending=True)[:3]
            rows.append({"kind": kind, "size": s, "mean_l2": float((z - 0.5).flatten(1).norm(dim=1).mean()),
                         "top": [{"class": ps.classes[int(c)], "share": float(share[c])} for c in top
                                 if share[c] > 0],
                         "top_share": float(share[top[0]]), "distinct": int((share > 0).sum()),
                         "share_sum": float(share.sum()), "mean_max_confidence": conf})
    if target is None:
        target = next((c for c, nm in enumerate(ps.classes) if "airliner" in nm.lower()), 0)
    assert last is not None
    r = FGSM()(ps.model, last, TargetedMisclassification(torch.full((n,), target)),
               threat=ThreatModel("linf", eps, (0.0, 1.0)))
    data = {"n": n, "model": ps.model_name, "rows": rows, "target": ps.classes[target], "eps": eps,
            "eps_255": eps * 255, "fgsm_sigma": sizes[-1], "fgsm_to_target": float(r.success.float().mean()),
            "published_top_share": 0.7, "published_fgsm": 0.25}
    return PhotoNoiseRun(_rounded(data))


def run_photo_physical(ctx: ExperimentContext, steps: int | None = None) -> PhotoPhysicalRun:
    """Destruction rate of the print-and-photograph preset on FGSM, BIM and ILLC photos (Kurakin 2016)."""
    ps = ctx.photos()
    steps = steps or (3 if ctx.quick else 4)
    eps255 = (16,) if ctx.quick else (16, 8)
    x, y = ps.tensors()
    photo = print_and_photograph()
    rep = destruction_experiment(ps.model, x, y, physical_attacks(("fgsm", "bim", "illc"), steps=steps),
                                 [e / 255 for e in eps255], {"photo": photo}, generator=ctx.generator(),
                                 batch_size=20)
    rows = []
    for e in eps255:
        for a in ("fgsm", "bim", "illc"):
            r = next(r for r in rep.rows if r.attack == a and math.isclose(r.eps, e / 255))
            rows.append({"eps_255": e, "attack": a.upper(), "rate": r.rate, "eligible": r.eligible,
                         "destroyed": r.destroyed, "adv_success": r.adv_success_rate,
                         "published": PUBLISHED_PHYSICAL[e][a]})
    data = {"n": int(x.shape[0]), "model": ps.model_name, "steps": steps, "rows": rows,
            "clean_accuracy": rep.clean_accuracy,
            "clean_photo_accuracy": rep.rows[0].clean_transformed_accuracy,
            "settings": photo.settings(), "seconds": rep.seconds}
    return PhotoPhysicalRun(_rounded(data))


register_analysis("photo-cross-section", run_photo_cross_section, "photo_cross_section")
register_analysis("photo-decision-map", run_photo_decision_map, "photo_decision_map")
register_analysis("photo-noise", run_photo_noise, "photo_noise")
register_analysis("photo-physical", run_photo_physical, "photo_physical")
