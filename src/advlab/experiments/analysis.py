"""The lecture's "why adversarial examples exist" experiments (``advlab analyze <name>``).

Each ``run_*`` function takes the :class:`~advlab.experiments.ExperimentContext`, runs one
analysis of :mod:`advlab.analysis` on the lecture's cached models and returns an
:class:`AnalysisRun`: the numbers, JSON-ready, in :attr:`AnalysisRun.data`, and the analysis
results the figures are drawn from. Nothing here plots or writes files: the lecture
sections (:mod:`advlab.reporting.sections.analysis`) and ``advlab analyze`` draw the
figures with :mod:`advlab.reporting.figures_analysis`.

:data:`ANALYSES` maps the ``advlab analyze`` names to ``(run function, section key)``. Other
experiment modules (:data:`ANALYSIS_MODULES`) add theirs with :func:`register_analysis`;
:func:`all_analyses` imports them and returns the whole table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from advlab import analysis as an
from advlab.evaluation import predict
from advlab.experiments.context import ExperimentContext
from advlab.models import LogisticRegression, confidence

__all__ = ["ANALYSES", "ANALYSIS_MODULES", "all_analyses", "register_analysis",
           "Analysis", "AnalysisRun", "CrossSectionsRun", "DecisionMapsRun", "SameNormRun",
           "LinearModelsRun", "ClassSweepRun", "RBFRun", "NoiseRun", "SubspaceRun", "GenerativeRun",
           "ModelBasedRun", "run_cross_sections", "run_decision_maps", "run_same_norm",
           "run_linear_models", "run_class_sweep", "run_rbf", "run_noise", "run_subspace",
           "run_generative", "run_model_based"]


# ============================================================================= results


@dataclass
class AnalysisRun:
    """What every analysis experiment returns.

    Attributes:
        data: the numbers, JSON-ready: floats rounded to 5 decimals, NaN as ``None``.
    """

    data: dict[str, Any]


@dataclass
class CrossSectionsRun(AnalysisRun):
    """:func:`run_cross_sections`: one cross section per (model, direction), titled."""

    sections: list[an.CrossSection]
    titles: list[str]
    classes: Sequence[str]


@dataclass
class DecisionMapsRun(AnalysisRun):
    """:func:`run_decision_maps`: the maps of each kind of :data:`advlab.analysis.MAP_KINDS`."""

    maps: dict[str, an.DecisionMaps]
    classes: Sequence[str]


@dataclass
class SameNormRun(AnalysisRun):
    """:func:`run_same_norm`: the four perturbations of one L2 norm."""

    result: an.SameNormResult
    classes: Sequence[str]


@dataclass
class LinearModelsRun(AnalysisRun):
    """:func:`run_linear_models`: the logistic regression's sign attack and universal perturbations."""

    logistic: an.LogisticSignResult
    universal: list[an.UniversalSignResult]
    classes: Sequence[str]  # the two classes of the logistic regression


@dataclass
class ClassSweepRun(AnalysisRun):
    """:func:`run_class_sweep`: one sweep per model and the CNN's gradient ascent on ``target``."""

    sweeps: dict[str, an.ClassSweep]
    ascent: an.GradientAscent
    target: int
    classes: Sequence[str]


@dataclass
class RBFRun(AnalysisRun):
    """:func:`run_rbf`: one FGSM row per model."""

    rows: list[an.FGSMRow]


@dataclass
class NoiseRun(AnalysisRun):
    """:func:`run_noise`: the noise classification of each model."""

    results: dict[str, an.NoiseResult]
    classes: Sequence[str]


@dataclass
class SubspaceRun(AnalysisRun):
    """:func:`run_subspace`: GAAS on the CNN with transfer to a second CNN."""

    result: an.SubspaceResult


@dataclass
class GenerativeRun(AnalysisRun):
    """:func:`run_generative`: the two mixture fits."""

    result: an.GenerativeComparison


@dataclass
class ModelBasedRun(AnalysisRun):
    """:func:`run_model_based`: optimisation inside and beyond the regressor's training box."""

    inside: an.ModelBasedResult
    outside: an.ModelBasedResult


# ============================================================================= helpers


def _confident_index(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     cls: int | None = None, threshold: float = 0.9,
                     also: nn.Module | None = None) -> int:
    """First example classified correctly (by both models) with high confidence, of class ``cls``."""
    logits = predict(model, x)
    ok = (logits.argmax(1) == y) & (confidence(model, logits) > threshold)
    if also is not None:
        ok &= predict(also, x).argmax(1) == y
    if cls is not None:
        ok &= y == cls
    idx = ok.nonzero().squeeze(1)
    if idx.numel() == 0:  # fall back to any example of the class
        idx = (y == cls).nonzero().squeeze(1) if cls is not None else torch.arange(len(y))
    return int(idx[0])


def _rounded(v: Any) -> Any:
    """Floats rounded for JSON/templates (NaN becomes None, i.e. JSON null)."""
    if isinstance(v, float):
        return None if v != v else round(v, 5)
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


def _sigmoid_cnn(ctx: ExperimentContext) -> nn.Module:
    m = ctx.model("analysis_cnn_sigmoid")
    # trained with per-class sigmoid outputs: its logits are log-odds
    object.__setattr__(m, "output_kind", "logodds")
    return m


# ============================================================================= 1. cross sections


def run_cross_sections(ctx: ExperimentContext, span: float = 1.0,
                       steps: int | None = None) -> CrossSectionsRun:
    """Logits along the FGSM and a random direction through one test digit (CNN, softmax)."""
    steps = steps or (201 if ctx.quick else 401)
    cnn, soft = ctx.model("cnn"), ctx.model("softmax")
    x, y = ctx.eval_data(200)
    i = _confident_index(cnn, x, y)
    lab = int(y[i])
    d_fgsm = an.fgsm_direction(cnn, x[i:i + 1], y[i:i + 1])[0]
    d_rand = an.random_sign_direction(x[i].shape, generator=ctx.generator())
    d_soft = an.fgsm_direction(soft, x[i:i + 1], y[i:i + 1])[0]
    runs = [("CNN, FGSM direction", cnn, d_fgsm), ("CNN, random +-1 direction", cnn, d_rand),
            ("softmax regression, FGSM direction", soft, d_soft)]
    rows, secs = [], []
    classes = ctx.test.classes
    for title, model, d in runs:
        cs = an.cross_section(model, x[i], d, span=span, steps=steps, label=lab)
        secs.append(cs)
        pred = cs.predicted
        half = steps // 2
        flip = (pred[half:] != lab).nonzero()
        end_cls = int(pred[-1])
        rows.append({"path": title, "pieces": cs.n_pieces, "units": cs.n_units,
                     "first_flip_t": float(cs.t[half + int(flip[0])]) if flip.numel() else None,
                     "pred_at_end": classes[end_cls], "end_class_tail_r2": float(cs.tail_r2[end_cls]),
                     "end_class_tail_slope": float(cs.tail_slope[end_cls])})
    data = {"label": classes[lab], "index": i, "span": span, "steps": steps, "rows": rows}
    return CrossSectionsRun(_rounded(data), secs, [r[0] for r in runs], classes)


# ============================================================================= 2. decision maps


def run_decision_maps(ctx: ExperimentContext, n: int | None = None, resolution: int | None = None,
                      eps: float = 0.3) -> DecisionMapsRun:
    """Warde-Farley & Goodfellow maps for the CNN: adversarial x random, adv x adv, random x random."""
    n = n or (9 if ctx.quick else 25)
    resolution = resolution or (11 if ctx.quick else 13)
    cnn = ctx.model("cnn")
    x, y = ctx.eval_data(max(200, 4 * n))
    ok = (predict(cnn, x).argmax(1) == y).nonzero().squeeze(1)[:n]
    x, y = x[ok], y[ok]
    rows, maps = [], {}
    for kind in an.MAP_KINDS:
        m = an.decision_maps(cnn, x, y, kind=kind, eps=eps, resolution=resolution,
                             generator=ctx.generator())
        rows.append({"kind": kind, "misclassified": m.mean_misclassified,
                     "maps_with_any_error": float((m.misclassified_fraction > 0).float().mean()),
                     "cosine_vertical": float(m.cosines.mean())})
        maps[kind] = m
    data = {"n": int(x.shape[0]), "resolution": resolution, "eps": eps, "rows": rows}
    return DecisionMapsRun(_rounded(data), maps, ctx.test.classes)


# ============================================================================= 3. same L2 norm


def run_same_norm(ctx: ExperimentContext, source: int = 3, other: int = 7) -> SameNormRun:
    """A test 3, the nearest training 7, and random/erasing/adversarial changes of that L2 norm."""
    cnn = ctx.model("cnn")
    x, y = ctx.eval_data(500)
    i = _confident_index(cnn, x, y, cls=source)
    pool = ctx.train.subset(classes=[other]).tensors()[0]
    res = an.same_norm_perturbations(cnn, x[i], source, pool, neighbour_class=other,
                                     generator=ctx.generator())
    classes = ctx.test.classes
    rows = [dict(r, prediction=classes[int(res.predictions[j])]) for j, r in enumerate(res.rows())]
    eps_equiv = 0.3 * float(torch.tensor(float(x[i].numel())).sqrt())
    data = {"label": classes[source], "other": classes[other], "radius": res.radius, "rows": rows,
            "clean_prediction": classes[res.clean_prediction],
            "clean_confidence": res.clean_confidence, "pixels": int(x[i].numel()),
            "linf_ball_l2": eps_equiv}
    return SameNormRun(_rounded(data), res, classes)


# ============================================================================= 4. linear models


def run_linear_models(ctx: ExperimentContext, eps: float = 0.25) -> LinearModelsRun:
    """Logistic regression on 3s vs 7s under x +- eps sign(w); universal sign perturbations."""
    lg = ctx.model("analysis_logistic37")
    if not isinstance(lg, LogisticRegression):
        raise TypeError(f"analysis_logistic37 must be a LogisticRegression, got {type(lg).__name__}")
    test = ctx.test.subset(classes=[3, 7], relabel=True)
    x, y = test.tensors()
    res = an.logistic_sign_attack(lg, x, y, eps)
    uni = [an.universal_sign_perturbation(lg, x, y, target=t, eps=eps) for t in (1, 0)]
    soft = ctx.model("softmax")
    xs, ys = ctx.eval_data()
    per_class = [an.universal_sign_perturbation(soft, xs, ys, target=c, eps=eps)
                 for c in range(ctx.test.num_classes)]
    data = {"eps": eps, "n": res.n, **res.to_dict(),
            "published_clean_error": 0.016, "published_adv_error": 0.99,
            "universal_logistic": [dict(u.to_dict(), target=test.classes[u.target]) for u in uni],
            "universal_softmax": [dict(u.to_dict(), target=ctx.test.classes[u.target])
                                  for u in per_class],
            "universal_softmax_mean": sum(u.fooling_rate for u in per_class) / len(per_class)}
    return LinearModelsRun(_rounded(data), res, uni, test.classes)


# ============================================================================= 5. class sweep


def run_class_sweep(ctx: ExperimentContext, source: int = 9, steps: int | None = None) -> ClassSweepRun:
    """Make one 9 every class for softmax and RBF; gradient ascent frames on the CNN."""
    steps = steps or (10 if ctx.quick else 20)
    soft, rbf, cnn = ctx.model("softmax"), ctx.model("analysis_rbf"), ctx.model("cnn")
    x, y = ctx.eval_data(500)
    i = _confident_index(soft, x, y, cls=source, threshold=0.5, also=rbf)
    sweeps = {"softmax regression": an.class_sweep(soft, x[i], source, steps=steps,
                                                   generator=ctx.generator()),
              "shallow RBF network": an.class_sweep(rbf, x[i], source, steps=steps,
                                                    generator=ctx.generator())}
    classes = ctx.test.classes
    rows = [{"model": k, "reached": int(s.success.sum()) - 1, "mean_eps": s.mean_eps_needed,
             "mean_l2": float(s.l2[s.targets != source].mean()),
             "eps_needed": [None if v != v else float(v) for v in s.eps_needed.tolist()]}
            for k, s in sweeps.items()]
    clean = predict(cnn, x[i:i + 1])[0]
    target = int(clean.argmin())  # the least likely class: the hardest target
    ga = an.gradient_ascent(cnn, x[i], target, step_size=0.01, steps=50, frames=6)
    data = {"label": classes[source], "index": i, "rows": rows, "classes": list(classes),
            "ascent": dict(ga.to_dict(), target=classes[target],
                           first_prob=float(ga.target_prob[0]), last_prob=float(ga.target_prob[-1]))}
    return ClassSweepRun(_rounded(data), sweeps, ga, target, classes)


# ============================================================================= 6. RBF networks


def run_rbf(ctx: ExperimentContext, eps: float = 0.25) -> RBFRun:
    """FGSM at eps = 0.25 on softmax, CNN and the shallow RBF network."""
    models = {"shallow RBF network": ctx.model("analysis_rbf"),
              "softmax regression": ctx.model("softmax"), "CNN": ctx.model("cnn")}
    x, y = ctx.eval_data()
    rows = an.fgsm_comparison(models, x, y, eps)
    data = {"eps": eps, "n": int(x.shape[0]), "rows": [r.to_dict() for r in rows],
            "published": [dict(model=k, **v) for k, v in an.PUBLISHED_FGSM.items()]}
    return RBFRun(_rounded(data), rows)


# ============================================================================= 7. noise


def run_noise(ctx: ExperimentContext, n: int | None = None,
              sigmas: tuple[float, ...] = (0.1, 0.3, 1.0), fgsm_eps: float = 0.25) -> NoiseRun:
    """Gaussian noise through the CNN, a per-class-sigmoid CNN and the RBF network."""
    n = n or (200 if ctx.quick else 500)
    fgsm_n = 50 if ctx.quick else 100
    models = {"CNN (softmax)": ctx.model("cnn"), "CNN (per-class sigmoid)": _sigmoid_cnn(ctx),
              "shallow RBF network": ctx.model("analysis_rbf")}
    classes = ctx.test.classes
    results, rows = {}, []
    for name, model in models.items():
        res = an.noise_classification(model, ctx.test.shape, sigmas=sigmas, n=n, fgsm_eps=fgsm_eps,
                                      fgsm_n=fgsm_n, generator=ctx.generator())
        results[name] = res
        for lv in res.levels:
            rows.append({"model": name, **lv.to_dict(), "top_class": classes[lv.top_class]})
    fgsm = [{"model": k, "mean": float(r.fgsm_success.mean()) if r.fgsm_success is not None else None,
             "per_class": r.fgsm_success.tolist() if r.fgsm_success is not None else None}
            for k, r in results.items()]
    data = {"n": n, "fgsm_n": fgsm_n, "fgsm_eps": fgsm_eps, "rows": rows, "fgsm": fgsm,
            "classes": list(classes)}
    return NoiseRun(_rounded(data), results, classes)


# ============================================================================= 8. subspace


def run_subspace(ctx: ExperimentContext, n: int | None = None, eps: float = 5.0) -> SubspaceRun:
    """GAAS on the CNN; transfer of the adversarial directions to a second CNN."""
    n = n or (20 if ctx.quick else 100)
    cnn, other = ctx.model("cnn"), ctx.model("analysis_cnn_b")
    x, y = ctx.eval_data(n)
    res = an.adversarial_subspace(cnn, x, y, eps=eps, transfer_model=other,
                                  generator=ctx.generator())
    d = res.to_dict()
    d.pop("n_adversarial")
    d.pop("n_transfer")
    d["n_total"] = int(x.shape[0])
    d["published"] = 25
    d["transfer_share"] = (res.mean_transfer / res.mean_adversarial
                           if res.mean_transfer is not None and res.mean_adversarial > 0 else None)
    return SubspaceRun(_rounded(d), res)


# ============================================================================= 9. generative


def run_generative(ctx: ExperimentContext, n: int = 2000) -> GenerativeRun:
    """Mixtures of two Gaussians vs two Laplacians on the same bimodal data."""
    res = an.generative_comparison(n=n, generator=ctx.generator())
    return GenerativeRun(_rounded(res.to_dict()), res)


# ============================================================================= 10. model-based optimisation


def run_model_based(ctx: ExperimentContext) -> ModelBasedRun:
    """Gradient ascent on a learned regressor of sin, inside and beyond its training box."""
    inside = an.model_based_optimization(search_box=1.0, generator=ctx.generator())
    outside = an.model_based_optimization(search_box=3.0, regressor=inside.regressor,
                                          generator=ctx.generator())
    rows = [dict(r.to_dict(), region=lab) for lab, r in
            (("training box [-1, 1]^2", inside), ("wider box [-3, 3]^2", outside))]
    for r in rows:
        r.pop("predicted")
        r.pop("true")
    return ModelBasedRun(_rounded({"rows": rows}), inside, outside)


class Analysis(NamedTuple):
    """One entry of :data:`ANALYSES`."""

    run: Callable[..., AnalysisRun]
    section: str  # the lecture section key (and template name)


#: ``advlab analyze <name>``: name -> (experiment, lecture section key)
ANALYSES: dict[str, Analysis] = {
    "cross-section": Analysis(run_cross_sections, "cross_sections"),
    "decision-map": Analysis(run_decision_maps, "decision_maps"),
    "same-norm": Analysis(run_same_norm, "same_norm"),
    "linear": Analysis(run_linear_models, "linear_models"),
    "class-sweep": Analysis(run_class_sweep, "class_sweep"),
    "rbf": Analysis(run_rbf, "rbf"),
    "noise": Analysis(run_noise, "rubbish_noise"),
    "subspace": Analysis(run_subspace, "subspace"),
    "generative": Analysis(run_generative, "generative"),
    "model-based": Analysis(run_model_based, "model_based"),
}

#: experiment modules that add analyses to :data:`ANALYSES` when imported (see
#: :func:`register_analysis`); :func:`all_analyses` imports them
ANALYSIS_MODULES = (
    "advlab.experiments.photo_attacks",  # the panda slide, attacks on photos, one class's direction
    "advlab.experiments.photo_maps",  # cross sections, decision maps, noise, physical world on photos
    "advlab.experiments.detectors",  # detectors and the adaptive attack that bypasses them
    "advlab.experiments.robust_sweep",  # class sweeps on an adversarially trained CNN, judged
    "advlab.experiments.claims",  # X's and O's, linear vs deep adversarial training, where to perturb
    "advlab.experiments.spam",  # evading spam detectors by adding features only
    "advlab.experiments.text",  # adversarial and virtual adversarial training on word embeddings
)


def register_analysis(name: str, run: Callable[..., AnalysisRun], section: str) -> None:
    """Add ``advlab analyze <name>`` (experiment ``run``, lecture section key ``section``).

    Raises:
        ValueError: ``name`` is registered already (each analysis is named once).
    """
    if name in ANALYSES:
        raise ValueError(f"analysis {name!r} is registered already")
    ANALYSES[name] = Analysis(run, section)


def all_analyses() -> dict[str, Analysis]:
    """:data:`ANALYSES` after importing every module of :data:`ANALYSIS_MODULES`."""
    import importlib

    for module in ANALYSIS_MODULES:
        importlib.import_module(module)
    return ANALYSES
