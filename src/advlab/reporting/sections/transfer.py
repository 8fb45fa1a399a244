"""Report sections for transfer and black-box attacks (issue 6).

Sections: the cross-technique transfer matrix, cross-training-set transfer, the
ensemble attack, the label-only black-box attack (success vs queries) and a universal
perturbation. Models: the lecture's cached CNN and softmax model, two MLPs trained on
disjoint halves of a training slice, and scikit-learn LR / linear SVM / decision tree /
kNN trained on a slice (pickled in the lecture's model cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from typing import Any

import torch
from torch import nn

from advlab import __version__
from advlab.analysis.transfer import cross_training_set, ensemble_transfer, transfer_matrix
from advlab.attacks import FGSM, PGD
from advlab.attacks.substitute import SubstituteAttack
from advlab.attacks.universal import UniversalPerturbation
from advlab.checkpoint import META_FILE, load_model, read_metadata
from advlab.defenses.trainer import TrainConfig, fit
from advlab.models import create_model
from advlab.models.sklearn import SklearnClassifier, TorchClassifier, create_sklearn_model
from advlab.reporting import figures
from advlab.reporting import figures_transfer as tfig
from advlab.reporting.html import Section
from advlab.reporting.lecture import MODEL_RECIPES, LectureContext, section
from advlab.threat import ThreatModel

log = logging.getLogger(__name__)

EPS = 0.3

#: a small CNN (a different architecture from the lecture's CNN) for the ensemble attack
MODEL_RECIPES.setdefault("transfer_cnn_small", {
    "model": "cnn", "settings": {"channels": [16, 32], "fc": 128},
    "full": {"epochs": 1, "lr": 1e-3}, "quick": {"epochs": 1, "lr": 1e-3},
    "limit": 10000, "quick_limit": 3000,
})
#: training examples for the scikit-learn models and each half-set MLP (full / quick)
SK_TRAIN = {False: 5000, True: 2000}
HALF = {False: 10000, True: 3000}


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sklearn(ctx: LectureContext, name: str) -> SklearnClassifier:
    """A scikit-learn model trained on the first training images, cached as a pickle."""
    n = min(SK_TRAIN[ctx.quick], len(ctx.train))
    model = create_sklearn_model(name)
    path = ctx.cache_dir / f"{ctx.train.name}-sk-{name}-{_key([model.settings(), n, __version__])}.pkl"
    if path.is_file():
        try:
            with path.open("rb") as f:  # our own cache file, written below
                cached = pickle.load(f)  # noqa: S301
            if isinstance(cached, SklearnClassifier):
                return cached
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as e:
            log.warning("ignoring cached model %s: %s", path, e)
    ctx.progress(f"training scikit-learn {name} on {n} {ctx.train.name} images")
    x, y = ctx.train.subset(limit=n).tensors()
    model.fit(x, y)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(model, f)
    tmp.replace(path)
    return model


def _init(seed: int, fn: Any) -> Any:
    """Build a model with its weights drawn from ``seed``, leaving the global RNG as it was."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return fn()
    finally:
        torch.set_rng_state(state)


def _half_mlp(ctx: LectureContext, half: int) -> nn.Module:
    """An MLP trained on one of two disjoint halves of a training slice (cached checkpoint)."""
    n = min(HALF[ctx.quick], len(ctx.train) // 2)
    idx = torch.arange(half * n, (half + 1) * n)
    images, labels = ctx.train.images[idx], ctx.train.labels[idx]
    cfg = TrainConfig(epochs=1 if ctx.quick else 2, lr=1e-3, seed=ctx.seed + half)
    x = images.float() / 255
    settings = {"in_shape": list(ctx.train.shape), "num_classes": ctx.train.num_classes,
                "mean": x.mean(dim=(0, 2, 3)).tolist(),
                "std": x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()}
    ckpt = ctx.cache_dir / f"{ctx.train.name}-mlp-half{half}-{_key([settings, cfg.__dict__, n, __version__])}"
    if (ckpt / META_FILE).is_file():
        try:
            if read_metadata(ckpt).get("epochs_done") == cfg.epochs:
                return load_model(ckpt).eval()
        except ValueError as e:
            log.warning("ignoring cached model at %s: %s", ckpt, e)
    ctx.progress(f"training mlp on half {half} ({n} {ctx.train.name} images)")
    model = _init(ctx.seed + 17 * (half + 1), lambda: create_model("mlp", **settings))
    fit(model, images, labels, cfg, checkpoint_dir=ckpt,
        resume=(ckpt / "train_state.safetensors").is_file(),
        meta={"dataset": ctx.train.name, "half": half})
    return model.eval()


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
        models[label] = _sklearn(ctx, key)
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
    a, b = _half_mlp(ctx, 0), _half_mlp(ctx, 1)
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
    mlp_a, mlp_b = _half_mlp(ctx, 0), _half_mlp(ctx, 1)
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
    sub = _init(ctx.seed, lambda: create_model("cnn", in_shape=list(ctx.test.shape),
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
    smoothed = atk.evaluate(oracle, x_eval, y_eval, threat, attack=noise_fgsm)["oracle_misclassification"]
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
    model = _half_mlp(ctx, 0)
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
