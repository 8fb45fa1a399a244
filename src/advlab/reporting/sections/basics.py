"""Foundation sections: the panda analogue, FGSM vs softmax and CNN, accuracy-vs-eps curves."""

from __future__ import annotations

from advlab.attacks import FGSM, PGD
from advlab.evaluation import accuracy_vs_eps, evaluate, predict
from advlab.models import confidence
from advlab.reporting import figures
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.threat import ThreatModel


@section("panda", "The panda-to-gibbon example, on digits")
def panda_section(ctx: LectureContext) -> Section:
    model = ctx.model("cnn")
    x, y = ctx.eval_data(200)
    classes = ctx.test.classes
    logits = predict(model, x)
    conf = confidence(model, logits)
    ok = (logits.argmax(1) == y) & (conf > 0.9)
    candidates = ok.nonzero().squeeze(1)
    chosen = None
    for eps in (0.1, 0.15, 0.2, 0.25, 0.3):
        if candidates.numel() == 0:
            break
        r = FGSM()(model, x[candidates], y[candidates], threat=ThreatModel("linf", eps))
        hit = r.success.nonzero().squeeze(1)
        if hit.numel():
            i = int(hit[0])
            chosen = (int(candidates[i]), eps, r.x_adv[i], r.logits[i])
            break
    if chosen is None:
        return Section("panda", "", data={"found": False})
    j, eps, xa, alog = chosen
    adv_conf = float(confidence(model, alog[None])[0])
    adv_pred = int(alog.argmax())
    data = {"found": True, "index": j, "eps": eps, "label": classes[int(y[j])],
            "clean_pred": classes[int(logits[j].argmax())], "clean_conf": float(conf[j]),
            "adv_pred": classes[adv_pred], "adv_conf": adv_conf}
    fig = figures.adversarial_triplet(x[j], xa, data["clean_pred"], data["clean_conf"],
                                      data["adv_pred"], adv_conf, eps)
    return Section("panda", "", data=data, figures={"triplet": figures.figure_to_data_uri(fig)})


@section("fgsm", "FGSM at eps = 0.25 against a shallow softmax model and a CNN")
def fgsm_section(ctx: LectureContext) -> Section:
    x, y = ctx.eval_data()
    rows = []
    threat = ThreatModel("linf", 0.25)
    for name, label in (("softmax", "softmax regression"), ("cnn", "CNN (Madry et al. architecture)")):
        model = ctx.model(name)
        r = evaluate(model, x, y, FGSM(), threat, batch_size=500)
        rows.append({"model": label, **r.to_dict()})
    published = [
        {"model": "shallow softmax, MNIST (Goodfellow et al. 2014)", "adv_error_rate": 0.999,
         "mean_confidence_adv_mistakes": 0.793},
        {"model": "maxout network, MNIST (Goodfellow et al. 2014)", "adv_error_rate": 0.894,
         "mean_confidence_adv_mistakes": 0.976},
    ]
    return Section("fgsm", "", data={"rows": rows, "published": published, "eps": 0.25,
                                     "n": int(x.shape[0])})


@section("curves", "Accuracy vs eps: FGSM and PGD")
def curves_section(ctx: LectureContext) -> Section:
    x, y = ctx.eval_data(ctx.n_curve)
    eps = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    steps = 10 if ctx.quick else 20
    curves, labels = [], []
    for name in ("softmax", "cnn"):
        model = ctx.model(name)
        curves.append(accuracy_vs_eps(model, x, y, FGSM(), eps, name="FGSM"))
        labels.append(f"{name}: FGSM")
        pgd = PGD(steps=steps, rel_step_size=2.5 / steps, random_init=True, early_stop=True)
        curves.append(accuracy_vs_eps(model, x, y, pgd, eps, generator=ctx.generator(),
                                      name=f"PGD-{steps}"))
        labels.append(f"{name}: PGD-{steps}")
    fig = figures.accuracy_curves(curves, labels, title=f"Linf robustness ({x.shape[0]} test images)")
    table = [{"label": lab, **c.to_dict()} for lab, c in zip(labels, curves, strict=True)]
    return Section("curves", "", data={"curves": table, "eps": eps, "n": int(x.shape[0]),
                                       "steps": steps},
                   figures={"curves": figures.figure_to_data_uri(fig)})
