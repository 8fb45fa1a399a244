"""Report sections of issue 7: printed-and-photographed adversarial images, attacks on policies."""

from __future__ import annotations

import math
from typing import Any

from advlab.evaluation import predict
from advlab.physical import (
    destruction_experiment,
    physical_attacks,
    print_and_photograph,
    standard_transforms,
)
from advlab.reporting import figures_physical as figs
from advlab.reporting.figures import figure_to_data_uri
from advlab.reporting.html import Section
from advlab.reporting.registry import LectureContext, section

#: Kurakin et al. (2016), table 3: destruction rate of photographed adversarial images,
#: Inception v3, eps = 16/255, average case (randomly chosen images), top-1
PUBLISHED_PHOTO = {"fgsm": 0.125, "bim": 0.404, "illc": 0.722}


@section("physical", "Adversarial examples in the physical world: print, photograph, transform")
def physical_section(ctx: LectureContext) -> Section:
    model = ctx.model("cnn")
    n = 40 if ctx.quick else 100
    x, y = ctx.eval_data(n)
    eps = [0.2] if ctx.quick else [0.1, 0.2, 0.3]
    eot_eps = 0.2
    transforms = standard_transforms()  # "photo" (print-and-photograph preset) is last
    steps = 5 if ctx.quick else 10
    base = destruction_experiment(model, x, y, physical_attacks(("fgsm", "bim", "illc"), steps=steps),
                                  eps, transforms, generator=ctx.generator(), keep_examples=16)
    eot = destruction_experiment(model, x, y,
                                 physical_attacks(("eot",), steps=steps, eot_samples=4 if ctx.quick else 8),
                                 [eot_eps], transforms, generator=ctx.generator(), keep_examples=16)
    rows = base.rows + eot.rows
    tnames = list(transforms)
    table = []
    for a, e in [(a, e) for a in ("fgsm", "bim", "illc") for e in eps] + [("eot", eot_eps)]:
        cells = [r for r in rows if r.attack == a and math.isclose(r.eps, e)]
        table.append({"attack": a.upper(), "eps": e, "adv_success": cells[0].adv_success_rate,
                      "eligible": cells[0].eligible, "rates": [c.rate for c in cells]})
    clean_t = {r.transform: r.clean_transformed_accuracy for r in base.rows[: len(tnames)]}

    def rate(a: str, t: str) -> float | None:
        for r in rows:
            if r.attack == a and r.transform == t and math.isclose(r.eps, eot_eps):
                return r.rate
        return None

    bars = {a.upper(): {t: rate(a, t) for t in tnames} for a in ("fgsm", "bim", "illc", "eot")}
    bim_photo, eot_photo = rate("bim", "photo"), rate("eot", "photo")
    target_met = (bim_photo is not None and eot_photo is not None and eot_photo <= 0.5 * bim_photo)
    # the strip: per attack, the first kept image that is correct when clean and fooled when attacked
    strip = []
    classes = ctx.test.classes
    for a, rep in (("fgsm", base), ("bim", base), ("illc", base), ("eot", eot)):
        ex = rep.examples.get((a, eot_eps))
        if ex is None:
            continue
        p, pa, pt = (predict(model, ex[k]).argmax(1) for k in ("x", "x_adv", "x_t"))
        yy = y[: ex["x"].shape[0]]
        ok = ((p == yy) & (pa != yy)).nonzero().squeeze(1)
        if ok.numel():
            i = int(ok[0])
            strip.append({"label": a.upper(), "x": ex["x"][i], "x_adv": ex["x_adv"][i], "x_t": ex["x_t"][i],
                          "y": int(yy[i]), "pred": int(p[i]), "pred_adv": int(pa[i]), "pred_t": int(pt[i])})
    fig_bars = figs.destruction_bars(bars, f"destruction rate at eps = {eot_eps} ({x.shape[0]} test images)")
    figures = {"bars": figure_to_data_uri(fig_bars)}
    if strip:
        figures["strip"] = figure_to_data_uri(figs.transform_strip(strip, classes))
    data: dict[str, Any] = {
        "n": int(x.shape[0]), "dataset": ctx.test.name, "eps": eps, "eot_eps": eot_eps, "steps": steps,
        "eot_samples": 4 if ctx.quick else 8, "transforms": tnames, "table": table,
        "clean_accuracy": base.clean_accuracy, "clean_transformed": [clean_t[t] for t in tnames],
        "bim_photo": bim_photo, "eot_photo": eot_photo, "target_met": target_met,
        "fgsm_photo": rate("fgsm", "photo"), "illc_photo": rate("illc", "photo"),
        "photo_rows": [{"attack": a.upper(), "ours": rate(a, "photo"), "published": PUBLISHED_PHOTO.get(a)}
                       for a in ("fgsm", "bim", "illc", "eot")],
        "photo_settings": print_and_photograph().settings(),
        "seconds": {**base.seconds, **eot.seconds},
    }
    return Section("physical", "", data=data, figures=figures)


def _seaquest(ctx: LectureContext, cache: Any) -> dict[str, Any] | None:
    """The MinAtar Seaquest part (full runs only, when the optional package minatar is installed)."""
    from advlab.experiments import get_or_train_policy
    from advlab.rl import default_config, minatar_available, return_vs_eps, rollout

    if ctx.quick or not minatar_available():
        return None
    ctx.progress("MinAtar Seaquest DQN policies (about 2.5 min each on first use, then cached)")
    target = get_or_train_policy("seaquest", default_config("seaquest", ctx.seed), cache)
    source = get_or_train_policy("seaquest", default_config("seaquest", ctx.seed + 1), cache)
    seeds = list(range(1_000, 1_050))
    eps = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2]
    c = return_vs_eps(target.q, "seaquest", seeds, eps, norm="linf", scale=target.obs_scale,
                      source=source.q, generator=ctx.generator()).to_dict()
    fig = figs.return_curves([c], f"MinAtar Seaquest DQN: mean return over {len(seeds)} seeded episodes",
                             unit="in pixel units; frames are 0/1")
    return {"episodes": len(seeds), "eps": eps, "curve": c, "train_return": target.eval_return,
            "steps": target.config.total_steps,
            "source_clean": rollout(source.q, "seaquest", seeds).mean_return,
            "figure": figure_to_data_uri(fig)}


@section("rlpolicy", "Adversarial attacks on neural network policies (CartPole, MinAtar Seaquest)")
def rl_section(ctx: LectureContext) -> Section:
    try:
        from advlab.experiments import get_or_train_policy
        from advlab.rl import DQNConfig, ObservationAttack, return_vs_eps, rollout
    except ImportError as e:  # gymnasium missing
        return Section("rlpolicy", "", data={"available": False, "reason": str(e)})
    cache = ctx.cache_dir.parent / "rl"
    ctx.progress("CartPole DQN policies (trained once, cached in " + str(cache) + ")")
    target = get_or_train_policy("cartpole", DQNConfig(seed=ctx.seed), cache)
    source = get_or_train_policy("cartpole", DQNConfig(seed=ctx.seed + 1), cache)
    episodes = 3 if ctx.quick else 10
    seeds = list(range(1_000, 1_000 + episodes))
    eps = [0.0, 0.5] if ctx.quick else [0.0, 0.05, 0.1, 0.2, 0.5, 1.0]
    max_steps = 200 if ctx.quick else None
    curves = []
    for norm in ("linf", "l2", "l1"):
        c = return_vs_eps(target.q, "cartpole", seeds, eps, norm=norm, scale=target.obs_scale,
                          source=source.q, generator=ctx.generator(), max_steps=max_steps)
        curves.append(c.to_dict())
    summary = []
    for cd in curves:
        half = 0.5 * cd["clean_return"]
        collapse = next((e for e, r in zip(cd["eps"], cd["attack_return"], strict=True) if r <= half), None)
        summary.append({"norm": cd["norm"], "collapse_eps": collapse, "eps": cd["eps"][-1],
                        "attack": cd["attack_return"][-1], "transfer": cd["transfer_return"][-1],
                        "noise": cd["noise_return"][-1],
                        "attack_below_noise": cd["attack_return"][-1] < cd["noise_return"][-1],
                        "transfer_below_noise": cd["transfer_return"][-1] < cd["noise_return"][-1]})
    # frames of one attacked episode: the first steps whose action the attack changed
    frame_eps = 0.5
    attacked = rollout(target.q, "cartpole", seeds[:1], record=True, max_steps=max_steps,
                       perturb=ObservationAttack("fgsm", "linf", frame_eps).perturbation(
                           target.q, target.obs_scale))
    tr = attacked.trace
    changed = [i for i, (c, a) in enumerate(zip(tr["clean_action"], tr["action"], strict=True)) if c != a]
    picks = (changed[:3] + [len(tr["obs"]) - 1]) if changed else list(range(0, len(tr["obs"]), 40))[:4]
    figures = {
        "curves": figure_to_data_uri(figs.return_curves(
            curves, f"CartPole-v1 DQN: mean return over {episodes} seeded episodes")),
        "frames": figure_to_data_uri(figs.cartpole_frames(tr, picks)),
    }
    data = {"available": True, "episodes": episodes, "eps": eps, "curves": curves, "summary": summary,
            "clean_return": curves[0]["clean_return"], "source_clean": rollout(
                source.q, "cartpole", seeds, max_steps=max_steps).mean_return,
            "obs_scale": [round(v, 4) for v in target.obs_scale.tolist()],
            "train_return": target.eval_return, "frame_eps": frame_eps,
            "frame_return": attacked.returns[0], "frame_changed": attacked.changed_share,
            "max_steps": max_steps or 500}
    sq = _seaquest(ctx, cache)
    data["seaquest"] = None
    if sq is not None:
        figures["seaquest"] = sq.pop("figure")
        data["seaquest"] = sq
    return Section("rlpolicy", "", data=data, figures=figures)
