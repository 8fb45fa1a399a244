"""Report sections for evaluation (registered with @section): "FGSM is not enough"."""

from __future__ import annotations

import time
from typing import Any

import torch

from advlab.attacks import FGSM, PGD, CarliniWagnerL2, create_attack
from advlab.evaluation import evaluate
from advlab.evaluation.cascade import cascade
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section
from advlab.threat import ThreatModel

# The adversarially trained CNN is the recipe "cnn_fgsmrs" of advlab.experiments.recipes
# (FGSM-RS, Wong et al. 2020, on a widened strided CNN).

#: published numbers on MNIST, Linf eps = 0.3: the robust accuracy the authors reported (PGD)
#: and the one standard AutoAttack measured (fra31/auto-attack README, MNIST table)
PUBLISHED = [
    {"source": "Wong et al. 2020 (FGSM-RS), as reported / under AutoAttack", "clean": 0.9850,
     "pgd": 0.8877, "cascade": 0.8288},
    {"source": "Madry et al. 2018 (PGD training), as reported / under AutoAttack", "clean": 0.9853,
     "pgd": 0.8962, "cascade": 0.8843},
]


@section("fgsm_not_enough", "FGSM is not enough: evaluating an adversarially trained model")
def fgsm_not_enough_section(ctx: LectureContext) -> Section:
    n = 40 if ctx.quick else 100
    x, y = ctx.eval_data(n)
    threat = ThreatModel("linf", 0.3)
    steps = 10 if ctx.quick else 40
    apgd_steps, queries = (10, 100) if ctx.quick else (50, 300)
    stages = [(name, create_attack(name, **kw)) for name, kw in (
        ("apgd-ce", {"steps": apgd_steps, "early_stop": True}),
        ("apgd-t", {"steps": apgd_steps, "n_target_classes": 2, "early_stop": True}),
        ("square", {"queries": queries}))]
    rows = []
    for key, label in (("cnn", "undefended CNN"),
                       ("cnn_fgsmrs", "FGSM-RS adversarially trained CNN (eps 0.3)")):
        model = ctx.model(key)
        attacks = {
            "fgsm": FGSM(),
            "pgd": PGD(steps=steps, random_init=True, early_stop=True),
            "cw": PGD(steps=steps, random_init=True, early_stop=True, loss="cw"),
        }
        row: dict[str, Any] = {"model": label}
        for name, atk in attacks.items():
            r = evaluate(model, x, y, atk, threat, generator=ctx.generator(), batch_size=500)
            row["clean"] = r.clean_acc
            row[name] = r.robust_acc
            row[f"{name}_seconds"] = r.seconds
        c = cascade(model, x, y, stages, threat, seed=ctx.seed, batch_size=500)
        row["cascade"] = c.robust_acc
        row["cascade_seconds"] = c.seconds
        row["stages"] = [{"name": s.name, "robust_acc": s.robust_acc, "broken": s.broken}
                         for s in c.stages]
        row["warnings"] = [w.code for w in c.warnings]
        # minimal L2 perturbations (Carlini-Wagner) on a few correctly classified points
        with torch.no_grad():
            ok_idx = (model(x).argmax(1) == y).nonzero().squeeze(1)[: 5 if ctx.quick else 30]
        t0 = time.perf_counter()
        cw = CarliniWagnerL2(steps=20 if ctx.quick else 50, binary_search_steps=3 if ctx.quick else 5,
                             initial_const=0.1)(
            model, x[ok_idx], y[ok_idx], threat=ThreatModel("l2", 1.0), batch_size=500)
        row["cw_l2_median"] = (float(cw.distance[cw.success].median()) if bool(cw.success.any())
                               else None)
        row["cw_l2_success"] = cw.success_rate
        row["cw_l2_n"] = int(ok_idx.numel())
        row["cw_l2_seconds"] = time.perf_counter() - t0
        rows.append(row)
    at = rows[1]
    gap = at["fgsm"] - at["cascade"]
    return Section("fgsm_not_enough", "", data={
        "rows": rows, "published": PUBLISHED, "n": int(x.shape[0]), "eps": 0.3, "steps": steps,
        "stages": [n for n, _ in stages], "gap": gap,
        "stage_settings": [a.settings() for _, a in stages]})
