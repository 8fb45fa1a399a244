"""Report sections for transfer and black-box attacks (issue 6).

Sections: the cross-technique transfer matrix, cross-training-set transfer, the
ensemble attack, the label-only black-box attack (success vs queries) and a universal
perturbation. Models: the lecture's cached CNN and softmax model, two MLPs trained on
disjoint halves of a training slice, and scikit-learn LR / linear SVM / decision tree /
kNN trained on a slice (cached as safetensors + JSON in the lecture's model cache).
"""

from __future__ import annotations

from typing import Any

import torch

from advlab.analysis.transfer import cross_training_set, ensemble_transfer, transfer_matrix
from advlab.attacks import FGSM, PGD
from advlab.attacks.substitute import SubstituteAttack
from advlab.attacks.universal import UniversalPerturbation
from advlab.experiments.cache import init_model
from advlab.experiments.recipes import HALF_TRAIN
from advlab.experiments.transfer import SKLEARN_TRAIN, half_mlp, sklearn_model
from advlab.models import create_model
from advlab.models.sklearn import TorchClassifier
from advlab.reporting import figures
from advlab.reporting import figures_transfer as tfig
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.threat import ThreatModel

EPS = 0.3
#: training examples for the scikit-learn models and each half-set MLP (full / quick)
SK_TRAIN = SKLEARN_TRAIN
HALF = HALF_TRAIN


PUBLISHED_MATRIX = [
    {"cell": "LR -> DT", "rate": 0.874,
     "source": "Papernot, McDaniel & Goodfellow 2016, MNIST, Figure 3"},
]


@section("transfer_matrix", "Transferability across model families (DNN, LR, SVM, DT, kNN)")
def transfer_matrix_section(ctx: LectureContext) -> Section:
    n = 200 if ctx.quick else 500
    x, y = ctx.eval_data(n)
    models: dict[str, Any] = {"DNN": ctx.model("cnn")}
    for key, label in (("lr", "LR"), ("svm", "SVM"), ("dt", "DT"), ("knn", "kNN")):
        models[label] = sklearn_model(ctx, key)
    threat = ThreatModel("linf", EPS)
    m = transfer_matrix(models, models, x, y, threat, attack=FGSM())
    fig = tfig.transfer_heatmap(m.rates, m.sources, m.targets,
                                title=f"FGSM / tree attack, Linf eps={EPS}, {n} test images")
    data = m.to_dict()
    data["published"] = PUBLISHED_MATRIX
    data["lr_dt"] = m.rate("LR", "DT")
    data["n_train_sklearn"] = min(SK_TRAIN[ctx.quick], len(ctx.train))
    data["rows"] = [{"source": s, "method": m.methods[s], "n": m.n_source_correct[i],
                     "rates": m.rates[i]} for i, s in enumerate(m.sources)]
    return Section("transfer_matrix", "", data=data,
                   figures={"heatmap": figures.figure_to_data_uri(fig)})


@section("transfer_cross_data", "Transfer across training sets")
def transfer_cross_data_section(ctx: LectureContext) -> Section:
    n = 200 if ctx.quick else 500
    x, y = ctx.eval_data(n)
    a, b = half_mlp(ctx, 0), half_mlp(ctx, 1)
    rows = []
    for atk_name, atk in (("FGSM", FGSM()), ("PGD-10", PGD(steps=10, random_init=False))):
        r = cross_training_set(a, b, x, y, ThreatModel("linf", EPS), attack=atk)
        rows.append({"attack": atk_name, **r.to_dict()})
    return Section("transfer_cross_data", "", data={
        "rows": rows, "eps": EPS, "n": int(x.shape[0]),
        "n_train_half": min(HALF[ctx.quick], len(ctx.train) // 2),
        "published": {"low": 0.6, "high": 0.8, "source": "the lecture (Szegedy et al. 2013; "
                      "Papernot et al. 2016): 60-80% for most models"}})


@section("transfer_ensemble", "The ensemble attack: fool several models at once, fool a held-out one")
def transfer_ensemble_section(ctx: LectureContext) -> Section:
    n = 200 if ctx.quick else 500
    x, y = ctx.eval_data(n)
    softmax, cnn = ctx.model("softmax"), ctx.model("cnn")
    mlp_a, mlp_b = half_mlp(ctx, 0), half_mlp(ctx, 1)
    steps = 10
    atk = PGD(steps=steps, random_init=False)
    threat = ThreatModel("linf", EPS)
    small = ctx.model("transfer_cnn_small")
    setups = [
        ("CNN", cnn, {"softmax": softmax, "MLP (half A)": mlp_a, "small CNN": small}),
        ("MLP (half B)", mlp_b, {"softmax": softmax, "MLP (half A)": mlp_a, "CNN": cnn}),
    ]
    runs, figs = [], {}
    for i, (name, held, members) in enumerate(setups):
        r = ensemble_transfer(members, held, x, y, threat, attack=atk, held_out_name=name)
        d = r.to_dict()
        d["best_single"] = max(r.single_rates, key=lambda k: r.single_rates[k])
        d["beats_best_single"] = r.ensemble_rate >= r.single_rates[d["best_single"]]
        runs.append(d)
        fig = tfig.ensemble_bars(r.single_rates, r.ensemble_rate, name,
                                 title=f"held-out {name}: PGD-{steps}, Linf eps={EPS}, {n} images")
        figs[f"bars{i}"] = figures.figure_to_data_uri(fig)
    return Section("transfer_ensemble", "", data={"runs": runs, "n": n, "steps": steps, "eps": EPS,
                                                  "target": 0.95}, figures=figs)


@section("blackbox", "The label-only black-box attack: a substitute trained on oracle labels")
def blackbox_section(ctx: LectureContext) -> Section:
    oracle_model = ctx.model("cnn")
    oracle = TorchClassifier(oracle_model)
    seed_n = 150
    x_all, y_all = ctx.test.subset(limit=seed_n + (200 if ctx.quick else 500)).tensors()
    x_seed = x_all[:seed_n]
    x_eval, y_eval = x_all[seed_n:], y_all[seed_n:]
    threat = ThreatModel("linf", EPS)
    rho = 4 if ctx.quick else 7
    atk = SubstituteAttack(substitute_epochs=rho, augmentation_step=0.1, sign_period=3,
                           train_epochs=5, max_queries=6400)
    gen = ctx.generator()

    def evaluate(rnd: int, s: SubstituteAttack) -> dict[str, Any]:
        return s.evaluate(oracle, x_eval, y_eval, threat, with_true_labels=True)

    # a small CNN substitute: on MNIST it transfers to the CNN oracle about twice as well as an
    # MLP substitute (bench/results/transfer_blackbox*.json)
    sub = init_model(ctx.seed, lambda: create_model("cnn", in_shape=list(ctx.test.shape),
                                                    num_classes=ctx.test.num_classes, channels=(16, 32),
                                                    fc=128))
    atk.fit(oracle, x_seed, sub, generator=gen, callback=evaluate)
    hist = [{k: v for k, v in h.items() if k != "threat"} for h in atk.history_]
    fig = tfig.queries_curve(hist, published=(6400, 0.8424))
    final = hist[-1]
    # the same queries, one better single step: FGSM on the Gaussian-smoothed substitute
    from advlab.attacks.eot import EOT
    from advlab.transforms import GaussianNoise

    noise_fgsm = EOT(GaussianNoise(0.3, straight_through_clip=True), samples=8 if ctx.quick else 16, steps=1,
                     step_size=EPS)
    smoothed = atk.evaluate(oracle, x_eval, y_eval, threat, attack=noise_fgsm,
                            generator=ctx.generator())["oracle_misclassification"]
    return Section("blackbox", "", data={
        "history": hist, "final": final, "queries": atk.queries_, "seed_n": seed_n,
        "n_eval": int(x_eval.shape[0]), "eps": EPS, "rho": rho, "settings": atk.settings(),
        "noise_fgsm": smoothed, "noise_fgsm_settings": noise_fgsm.settings(),
        "published": {"rate": 0.8424, "queries": 6400,
                      "source": "Papernot et al. 2017, MetaMind oracle, MNIST, eps=0.3"},
        "target": 0.8},
        figures={"curve": figures.figure_to_data_uri(fig)})


@section("universal", "A universal adversarial perturbation")
def universal_section(ctx: LectureContext) -> Section:
    model = half_mlp(ctx, 0)
    n_fit = 200 if ctx.quick else 500
    n_test = 200 if ctx.quick else 1000
    x_all, _ = ctx.test.subset(limit=n_fit + n_test).tensors()
    x_fit, x_test = x_all[:n_fit], x_all[n_fit:]
    rows = []
    panel = None
    for norm, eps in (("linf", 0.2), ("l2", 4.0)):
        threat = ThreatModel(norm, eps)
        up = UniversalPerturbation(max_passes=2 if ctx.quick else 4, batch_size=16).fit(
            model, x_fit, threat, generator=ctx.generator())
        fr = up.fooling_rate(model, x_test)
        # the same budget spent on a random perturbation, for comparison
        g = ctx.generator()
        v = threat.strategy.random_init((1, *x_test.shape[1:]), eps, generator=g, device=x_test.device,
                                        dtype=x_test.dtype)
        if norm == "linf":
            v = v.sign() * eps
        else:
            v = threat.strategy.normalize_grad(v) * eps
        with torch.no_grad():
            rnd = float((model(torch.clamp(x_test + v, 0, 1)).argmax(1)
                         != model(x_test).argmax(1)).float().mean())
        rows.append({"norm": norm, "eps": eps, "fooling_rate_fit": up.fooling_rate_,
                     "fooling_rate_test": fr, "random_fooling_rate": rnd, "passes": up.passes_,
                     "history": up.history_})
        if panel is None:
            with torch.no_grad():  # show fooled images first, then some that resist
                pool = x_test[:200]
                fooled = model(up.transform(pool)).argmax(1) != model(pool).argmax(1)
                order = torch.cat([fooled.nonzero().squeeze(1)[:4], (~fooled).nonzero().squeeze(1)])
                xs = pool[order[:6]]
                cp = model(xs).argmax(1).tolist()
                ap = model(up.transform(xs)).argmax(1).tolist()
            panel = tfig.universal_panel(up.perturbation_, xs, up.transform(xs), cp, ap,
                                         ctx.test.classes,
                                         title=f"one perturbation (Linf eps={eps}) for every image")
    assert panel is not None
    return Section("universal", "", data={
        "rows": rows, "n_fit": n_fit, "n_test": int(x_test.shape[0]), "model": "MLP (half A)",
        "published": [
            {"model": "GoogLeNet (ImageNet val.)", "fooling_rate": 0.789},
            {"model": "ResNet-152 (ImageNet val.)", "fooling_rate": 0.840},
        ],
        "published_note": "Moosavi-Dezfooli et al. 2017, Table 1, Linf norm 10 on [0, 255] images"},
        figures={"panel": figures.figure_to_data_uri(panel)})
