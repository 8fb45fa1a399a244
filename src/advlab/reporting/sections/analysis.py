"""Report sections for issue 5: why adversarial examples exist (registered with @section)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from advlab import analysis as an
from advlab.evaluation import predict
from advlab.experiments.recipes import SigmoidObjective  # noqa: F401 - re-exported
from advlab.models import LogisticRegression, confidence
from advlab.reporting import figures_analysis as fa
from advlab.reporting.figures import figure_to_data_uri
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section

# ============================================================================= helpers

def _uri(fig: Any) -> str:
    return figure_to_data_uri(fig, dpi=90)


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


def _f(v: Any) -> Any:
    """Floats rounded for JSON/templates (NaN becomes None, i.e. JSON null)."""
    if isinstance(v, float):
        return None if v != v else round(v, 5)
    if isinstance(v, dict):
        return {k: _f(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_f(x) for x in v]
    return v


def _sigmoid_cnn(ctx: LectureContext) -> nn.Module:
    m = ctx.model("analysis_cnn_sigmoid")
    # trained with per-class sigmoid outputs: its logits are log-odds
    object.__setattr__(m, "output_kind", "logodds")
    return m


# ============================================================================= 1. cross sections


def run_cross_sections(ctx: LectureContext, span: float = 1.0, steps: int | None = None) -> Section:
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
    fig = fa.cross_sections_figure(secs, [r[0] for r in runs], classes)
    return Section("cross_sections", "", data=_f({"label": classes[lab], "index": i, "span": span,
                                                  "steps": steps, "rows": rows}),
                   figures={"cross": _uri(fig)})


@section("cross_sections", "Why adversarial examples exist: linear pieces along a 1-D cross section")
def cross_sections_section(ctx: LectureContext) -> Section:
    return run_cross_sections(ctx)


# ============================================================================= 2. decision maps


def run_decision_maps(ctx: LectureContext, n: int | None = None, resolution: int | None = None,
                      eps: float = 0.3) -> Section:
    """Warde-Farley & Goodfellow maps for the CNN: adversarial x random, adv x adv, random x random."""
    n = n or (9 if ctx.quick else 25)
    resolution = resolution or (11 if ctx.quick else 13)
    cnn = ctx.model("cnn")
    x, y = ctx.eval_data(max(200, 4 * n))
    ok = (predict(cnn, x).argmax(1) == y).nonzero().squeeze(1)[:n]
    x, y = x[ok], y[ok]
    rows, figs = [], {}
    for kind in an.MAP_KINDS:
        m = an.decision_maps(cnn, x, y, kind=kind, eps=eps, resolution=resolution,
                             generator=ctx.generator())
        rows.append({"kind": kind, "misclassified": m.mean_misclassified,
                     "maps_with_any_error": float((m.misclassified_fraction > 0).float().mean()),
                     "cosine_vertical": float(m.cosines.mean())})
        figs[kind] = _uri(fa.decision_maps_figure(m, ctx.test.classes))
    return Section("decision_maps", "", data=_f({"n": int(x.shape[0]), "resolution": resolution,
                                                 "eps": eps, "rows": rows}), figures=figs)


@section("decision_maps", "Adversarial examples live in broad subspaces: 2-D decision maps")
def decision_maps_section(ctx: LectureContext) -> Section:
    return run_decision_maps(ctx)


# ============================================================================= 3. same L2 norm


def run_same_norm(ctx: LectureContext, source: int = 3, other: int = 7) -> Section:
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
    return Section("same_norm", "", data=_f({
        "label": classes[source], "other": classes[other], "radius": res.radius, "rows": rows,
        "clean_prediction": classes[res.clean_prediction], "clean_confidence": res.clean_confidence,
        "pixels": int(x[i].numel()), "linf_ball_l2": eps_equiv}),
        figures={"same_norm": _uri(fa.same_norm_figure(res, classes))})


@section("same_norm", "Same L2 norm, different effect: why the max norm is the constraint")
def same_norm_section(ctx: LectureContext) -> Section:
    return run_same_norm(ctx)


# ============================================================================= 4. linear models


def run_linear_models(ctx: LectureContext, eps: float = 0.25) -> Section:
    """Logistic regression on 3s vs 7s under x +- eps sign(w); universal sign perturbations."""
    lg = ctx.model("analysis_logistic37")
    assert isinstance(lg, LogisticRegression)
    test = ctx.test.subset(classes=[3, 7], relabel=True)
    x, y = test.tensors()
    res = an.logistic_sign_attack(lg, x, y, eps)
    uni = [an.universal_sign_perturbation(lg, x, y, target=t, eps=eps) for t in (1, 0)]
    soft = ctx.model("softmax")
    xs, ys = ctx.eval_data()
    per_class = [an.universal_sign_perturbation(soft, xs, ys, target=c, eps=eps)
                 for c in range(ctx.test.num_classes)]
    fig = fa.logistic_sign_figure(res, test.classes, universal=uni)
    data = {"eps": eps, "n": res.n, **res.to_dict(),
            "published_clean_error": 0.016, "published_adv_error": 0.99,
            "universal_logistic": [dict(u.to_dict(), target=test.classes[u.target]) for u in uni],
            "universal_softmax": [dict(u.to_dict(), target=ctx.test.classes[u.target])
                                  for u in per_class],
            "universal_softmax_mean": sum(u.fooling_rate for u in per_class) / len(per_class)}
    return Section("linear_models", "", data=_f(data), figures={"logistic": _uri(fig)})


@section("linear_models", "Linear models: logistic regression on 3s vs 7s and the sign of its weights")
def linear_models_section(ctx: LectureContext) -> Section:
    return run_linear_models(ctx)


# ============================================================================= 5. class sweep


def run_class_sweep(ctx: LectureContext, source: int = 9, steps: int | None = None) -> Section:
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
    ga = an.gradient_ascent(cnn, x[i], target, step_size=0.01, steps=50,
                            frames=6)
    figs = {"sweep": _uri(fa.class_sweep_figure(sweeps, classes)),
            "ascent": _uri(fa.gradient_ascent_figure(
                ga, classes, f"CNN: gradient ascent on log p({classes[target]} | x)"))}
    return Section("class_sweep", "", data=_f({
        "label": classes[source], "index": i, "rows": rows, "classes": list(classes),
        "ascent": dict(ga.to_dict(), target=classes[target],
                       first_prob=float(ga.target_prob[0]), last_prob=float(ga.target_prob[-1]))}),
        figures=figs)


@section("class_sweep", "Sweeping one 9 through every class: softmax vs RBF, and gradient ascent")
def class_sweep_section(ctx: LectureContext) -> Section:
    return run_class_sweep(ctx)


# ============================================================================= 6. RBF networks


def run_rbf(ctx: LectureContext, eps: float = 0.25) -> Section:
    """FGSM at eps = 0.25 on softmax, CNN and the shallow RBF network."""
    models = {"shallow RBF network": ctx.model("analysis_rbf"),
              "softmax regression": ctx.model("softmax"), "CNN": ctx.model("cnn")}
    x, y = ctx.eval_data()
    rows = an.fgsm_comparison(models, x, y, eps)
    pub = an.PUBLISHED_FGSM
    fig = fa.fgsm_rows_figure(rows, {k: pub[k] for k in ("shallow RBF network", "shallow softmax")})
    return Section("rbf", "", data=_f({"eps": eps, "n": int(x.shape[0]),
                                       "rows": [r.to_dict() for r in rows],
                                       "published": [dict(model=k, **v) for k, v in pub.items()]}),
                   figures={"bars": _uri(fig)})


@section("rbf", "RBF networks resist adversarial examples (and pay in accuracy)")
def rbf_section(ctx: LectureContext) -> Section:
    return run_rbf(ctx)


# ============================================================================= 7. noise


def run_noise(ctx: LectureContext, n: int | None = None, sigmas: tuple[float, ...] = (0.1, 0.3, 1.0),
              fgsm_eps: float = 0.25) -> Section:
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
    return Section("rubbish_noise", "", data=_f({
        "n": n, "fgsm_n": fgsm_n, "fgsm_eps": fgsm_eps, "rows": rows, "fgsm": fgsm,
        "classes": list(classes)}), figures={"noise": _uri(fa.noise_figure(results, classes))})


@section("rubbish_noise", "Noise is classified as something: the rubbish class")
def noise_section(ctx: LectureContext) -> Section:
    return run_noise(ctx)


# ============================================================================= 8. subspace


def run_subspace(ctx: LectureContext, n: int | None = None, eps: float = 5.0) -> Section:
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
    return Section("subspace", "", data=_f(d),
                   figures={"hist": _uri(fa.subspace_figure(
                       res, f"GAAS on {res.n} test images, transfer to a second CNN"))})


@section("subspace", "The adversarial subspace is about 25-dimensional (GAAS)")
def subspace_section(ctx: LectureContext) -> Section:
    return run_subspace(ctx)


# ============================================================================= 9. generative


def run_generative(ctx: LectureContext, n: int = 2000) -> Section:
    """Mixtures of two Gaussians vs two Laplacians on the same bimodal data."""
    res = an.generative_comparison(n=n, generator=ctx.generator())
    return Section("generative", "", data=_f(res.to_dict()),
                   figures={"mixtures": _uri(fa.generative_figure(res))})


@section("generative", "Generative models are not enough: same likelihood, different posteriors")
def generative_section(ctx: LectureContext) -> Section:
    return run_generative(ctx)


# ============================================================================= 10. model-based optimisation


def run_model_based(ctx: LectureContext) -> Section:
    """Gradient ascent on a learned regressor of sin, inside and beyond its training box."""
    inside = an.model_based_optimization(search_box=1.0, generator=ctx.generator())
    outside = an.model_based_optimization(search_box=3.0, regressor=inside.regressor,
                                          generator=ctx.generator())
    rows = [dict(r.to_dict(), region=lab) for lab, r in
            (("training box [-1, 1]^2", inside), ("wider box [-3, 3]^2", outside))]
    for r in rows:
        r.pop("predicted")
        r.pop("true")
    return Section("model_based", "", data=_f({"rows": rows}),
                   figures={"landscape": _uri(fa.model_based_figure(outside, an.mean_sine))})


@section("model_based", "Model-based optimization finds adversarial examples for the model")
def model_based_section(ctx: LectureContext) -> Section:
    return run_model_based(ctx)


#: ``advlab analyze <name>``: name -> (run function, section key)
ANALYSES: dict[str, tuple[Callable[..., Section], str]] = {
    "cross-section": (run_cross_sections, "cross_sections"),
    "decision-map": (run_decision_maps, "decision_maps"),
    "same-norm": (run_same_norm, "same_norm"),
    "linear": (run_linear_models, "linear_models"),
    "class-sweep": (run_class_sweep, "class_sweep"),
    "rbf": (run_rbf, "rbf"),
    "noise": (run_noise, "rubbish_noise"),
    "subspace": (run_subspace, "subspace"),
    "generative": (run_generative, "generative"),
    "model-based": (run_model_based, "model_based"),
}
