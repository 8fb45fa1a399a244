"""The ``advlab`` command line. The only place that sets seeds, reads env vars and prints."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from advlab import __version__
from advlab.cli._attacks import OPTION_FLAGS, SetOpt, build_attack
from advlab.cli._common import (
    CacheDir,
    DataDir,
    UsageError,
    _cache,
    _load_data,
    _load_model,
    _parse_classes,
    _parse_floats,
    _write_json,
    app,
    check_output,
    console,
    load_lecture_data,
    out_console,
)
from advlab.cli._inputs import BoundsOpt, DeviceOpt, MeanOpt, NormalizeOpt, StdOpt

__all__ = ["app", "main", "UsageError"]


# ----------------------------------------------------------------------------- train


@app.command()
def train(
    model: Annotated[str, typer.Option(help="Model name: softmax, logistic, mlp, cnn, strided-cnn, maxout, rbf.")] = "cnn",
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist, cifar10 or digits.")] = "mnist",
    out: Annotated[Path, typer.Option(help="Checkpoint directory.")] = Path("runs/model"),
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    optimizer: Annotated[str, typer.Option(help="adam or sgd.")] = "adam",
    seed: int = 0,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training examples.")] = None,
    classes: Annotated[str | None, typer.Option(help="Keep only these classes, e.g. 3,7.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a checkpoint already in --out (without it, that is an error).")] = False,
    defense: Annotated[str, typer.Option(help="none, fgsm (Goodfellow), fgsm-rs (fast AT), pgd, trades or vat.")] = "none",
    eps: Annotated[float | None, typer.Option(help="Training eps (default: fgsm 0.25, fgsm-rs/pgd/trades 0.3 linf, vat 2.0 l2).")] = None,
    norm: Annotated[str | None, typer.Option(help="Threat-model norm (default linf; l2 for vat).")] = None,
    alpha: Annotated[float, typer.Option(help="fgsm: weight of the clean loss, in [0, 1].")] = 0.5,
    steps: Annotated[int | None, typer.Option(help="pgd/trades: inner attack steps (default 7 / 10).")] = None,
    step_size: Annotated[float | None, typer.Option(help="fgsm-rs/pgd/trades: absolute step size.")] = None,
    beta: Annotated[float, typer.Option(help="trades: robustness weight.")] = 6.0,
    xi: Annotated[float, typer.Option(help="vat: power-iteration finite-difference step.")] = 1e-6,
    vat_iterations: Annotated[int, typer.Option(help="vat: power iterations.")] = 1,
    entropy_min: Annotated[bool, typer.Option(help="vat: add entropy minimisation on unlabelled data.")] = False,
    labels: Annotated[int | None, typer.Option(help="vat: keep N labels (N/classes per class, seeded); the rest is unlabelled.")] = None,
    unlabeled_batch_size: Annotated[int, typer.Option(help="vat --labels: unlabelled examples per step.")] = 256,
    lr_schedule: Annotated[str, typer.Option(help="constant, cyclic, step or cosine (per batch).")] = "constant",
    settings: Annotated[str | None, typer.Option(help='Model settings as JSON, e.g. \'{"channels": [16, 32], "fc": 128}\'.')] = None,
    curves: Annotated[bool | None, typer.Option("--curves/--no-curves", help="Per-epoch clean/FGSM/PGD test error at the training eps, to OUT/curves.json (default: on for adversarial defenses).")] = None,
    curve_n: Annotated[int, typer.Option(help="Test images for the learning curves.")] = 1000,
    curve_steps: Annotated[int, typer.Option(help="PGD steps for the learning curves.")] = 10,
    device: DeviceOpt = None,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    download: Annotated[bool, typer.Option(help="Download the dataset if it is not found locally.")] = True,
) -> None:
    """Train a model (optionally adversarially) and write a checkpoint after every epoch."""
    from advlab.cli import cmd_defenses as cd
    from advlab.defenses import CurveConfig, TrainConfig, fit
    from advlab.models import create_model

    # validate every setting before loading data or training
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other: continue or replace, not both")
    if not resume and not overwrite and out.is_dir() and any(
            (out / f).exists() for f in ("model.json", "model.safetensors", "train_state.safetensors")):
        raise UsageError(f"{out} already holds a checkpoint; pass --resume to continue it or --overwrite "
                         "to replace it")
    check_output(out, "dir")
    objective = cd.build_objective(defense, eps=eps, alpha=alpha, steps=steps, step_size=step_size,
                                   beta=beta, xi=xi, vat_iterations=vat_iterations,
                                   entropy_min=entropy_min, norm=norm)
    cd.check_labels(labels, defense)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, seed=seed,
                      lr_schedule=lr_schedule, unlabeled_batch_size=unlabeled_batch_size)
    cfg.validate()
    try:
        extra_settings = json.loads(settings) if settings else {}
    except json.JSONDecodeError as e:
        raise UsageError(f"--settings must be a JSON object: {e}") from None
    if not isinstance(extra_settings, dict):
        raise UsageError("--settings must be a JSON object, e.g. '{\"hidden\": [256]}'")
    adv = defense.lower() not in ("none", "vat")
    use_curves = adv if curves is None else curves
    curve_cfg = None
    if use_curves:
        c_eps = getattr(objective, "eps", None) if adv else eps
        c_eps = 0.3 if c_eps is None else float(c_eps)
        c_norm = getattr(objective, "norm", "linf") if adv else (norm or "linf")
        curve_cfg = CurveConfig(eps=c_eps, norm=c_norm, pgd_steps=curve_steps, n=curve_n, seed=seed)
        curve_cfg.validate()
    if curve_n < 1:
        raise UsageError(f"--curve-n must be >= 1, got {curve_n}")

    from advlab.cli._inputs import resolve_device

    chosen = resolve_device(device) if device is not None else None
    rank, world, dist_device = cd.init_distributed()
    device = dist_device if world > 1 else chosen  # type: ignore[assignment]
    finished = False
    try:
        train_ds = _load_data(dataset, "train", data_dir, cache_dir, limit, classes, download)
        test_ds = _load_data(dataset, "test", data_dir, cache_dir, None, classes, download)
        images, targets, unlabeled = train_ds.images, train_ds.labels, None
        if labels is not None:
            chosen = cd.select_labeled(targets, labels, train_ds.num_classes,
                                       torch.Generator().manual_seed(seed))
            rest = torch.ones(len(train_ds), dtype=torch.bool)
            rest[chosen] = False
            unlabeled, images, targets = images[rest], images[chosen], targets[chosen]
        from advlab.data import normalization_stats

        mean, std = normalization_stats(train_ds.images)
        model_settings = dict(extra_settings, in_shape=list(train_ds.shape),
                              num_classes=train_ds.num_classes, mean=mean, std=std)
        torch.manual_seed(seed)
        net = create_model(model, **model_settings)
        test_x, test_y = test_ds.images, test_ds.labels
        if device is not None:
            net = net.to(device)
            images, targets, test_x, test_y = (t.to(device) for t in (images, targets, test_x, test_y))
            unlabeled = unlabeled.to(device) if unlabeled is not None else None
        lead = rank == 0
        what = f"{len(images)} labelled + {len(unlabeled)} unlabelled" if unlabeled is not None \
            else str(len(images))
        if lead:
            console.print(f"training [bold]{model}[/] ({objective!r}) on {what} {dataset} images"
                          f"{f' on {world} processes' if world > 1 else ''} -> {out}")
        run_meta = {"dataset": dataset, "seed": seed, "classes": _parse_classes(classes),
                    "limit": limit, "labels": labels}
        curve_file = out / "curves.json"
        with Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.2%}"),
                      TimeElapsedColumn(), console=console, disable=not lead) as progress:
            task = progress.add_task("train", total=None, epoch=0, loss=0.0, acc=0.0)
            history: list[Any] = []

            def on_batch(ep: int, step: int, steps_: int, loss: float, acc: float) -> None:
                progress.update(task, completed=step, total=steps_, epoch=f"{ep + 1}/{epochs}",
                                loss=loss, acc=acc)

            def on_epoch(e: Any) -> None:
                msg = f"epoch {e.epoch}: loss {e.loss:.4f} train acc {e.train_acc:.2%}"
                if e.test_acc is not None:
                    msg += f" test acc {e.test_acc:.2%}"
                if "fgsm_error" in e.extra:
                    msg += (f" | test error clean {e.extra['clean_error']:.2%} FGSM "
                            f"{e.extra['fgsm_error']:.2%} PGD {e.extra['pgd_error']:.2%}")
                progress.console.print(msg + f" ({e.passes} passes, {e.seconds:.1f} s)")
                history.append(e)
                cd.write_curves(curve_file, {"meta": run_meta, "partial": True,
                                             "history": [h.__dict__ for h in history]})

            result = fit(net, images, targets, cfg, objective=objective,
                         test=(test_x, test_y), checkpoint_dir=out,
                         resume=resume, meta=run_meta, on_batch=on_batch, on_epoch=on_epoch,
                         unlabeled=unlabeled, curves=curve_cfg)
        if lead:
            summary = {"checkpoint": str(out), "defense": defense, "objective": objective.settings()
                       if hasattr(objective, "settings") else defense, "world_size": world,
                       **run_meta}
            cd.write_curves(curve_file, cd.curves_json(result, summary))
            last = result.history[-1]
            typer.echo(json.dumps({"checkpoint": str(out), "epochs": last.epoch,
                                   "test_acc": last.test_acc, "passes": result.passes,
                                   "seconds": round(result.seconds, 2), **last.extra}))
        finished = True
    finally:
        if world > 1:
            cd.finish_distributed(synchronize=finished)


# ----------------------------------------------------------------------------- eval / attack

ImageSizeOpt = Annotated[int | None, typer.Option(help="folder: datasets: resize the shorter side to --resize, then centre-crop to this size.")]
ResizeOpt = Annotated[int | None, typer.Option(help="folder: datasets: shorter side before the crop (default image-size / 0.875).")]
ClassesFileOpt = Annotated[Path | None, typer.Option(help="folder: datasets: class names, one per line (line i = label i).")]
AttackOpt = Annotated[str, typer.Option(help="fgsm, bim, pgd, apgd, apgd-t, cw, deepfool, square, ... (see advlab info).")]
StepsOpt = Annotated[int | None, typer.Option(help="Iterations (default: the attack's own; an attack without steps rejects it).")]


def _common_eval(checkpoint: str, dataset: str, split: str, limit: int | None, classes: str | None,
                 data_dir: Path | None, cache_dir: Path | None,
                 download: bool = True, **image: Any):  # type: ignore[no-untyped-def]
    net = _load_model(checkpoint)
    meta = getattr(net, "advlab_meta", {})
    if classes is None and meta.get("classes"):
        classes = ",".join(str(c) for c in meta["classes"])
    ds = _load_data(dataset, split, data_dir, cache_dir, limit, classes, download, **image)
    if classes is not None and len(ds):
        ds = _match_outputs(net, ds, classes, dataset, split, data_dir, cache_dir, limit, download,
                            image)
    return net, ds


def _match_outputs(net, ds, classes, dataset, split, data_dir, cache_dir, limit, download, image):  # type: ignore[no-untyped-def]
    """``--classes`` keeps the labels the model predicts.

    A model trained on those classes only (as many outputs as classes) sees them renumbered
    0..k-1; a model with an output for every class of the dataset keeps the original labels
    (renumbering would make its 3 look like a mistake for "0"); anything else is refused.
    """
    from advlab.evaluation import predict

    with torch.no_grad():
        n_out = predict(net, ds.tensors()[0][:1]).shape[1]
    chosen = _parse_classes(classes) or []
    if n_out == len(chosen):
        return ds
    if n_out > max(chosen):
        console.print(f"[dim]the model has {n_out} outputs: evaluating it on classes {classes} with "
                      "their original labels[/]")
        from advlab.data import load_dataset

        return load_dataset(dataset, split, data_dir=data_dir, download=download, limit=limit,
                            classes=chosen, relabel=False, cache_dir=_cache(cache_dir), **image)
    raise UsageError(f"--classes {classes} does not fit a model with {n_out} outputs: give as many "
                     f"classes as it has outputs, or classes below {n_out}")


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[str, typer.Argument(help="advlab checkpoint dir, or file.py:function returning a model.")],
    dataset: str = "mnist",
    split: str = "test",
    limit: Annotated[int | None, typer.Option(help="First N examples.")] = 1000,
    classes: str | None = None,
    attack: AttackOpt = "pgd",
    norm: Annotated[str, typer.Option(help="linf, l2 or l1.")] = "linf",
    eps: float = 0.3,
    steps: StepsOpt = None,
    step_size: float | None = None,
    rel_step_size: float | None = None,
    restarts: int | None = None,
    random_init: Annotated[bool | None, typer.Option("--random-init/--no-random-init")] = None,
    early_stop: Annotated[bool | None, typer.Option("--early-stop/--no-early-stop", help="Stop per sample once broken (same accuracy, less work); on by default for attacks that take it.")] = None,
    loss: Annotated[str | None, typer.Option(help="ce, cw or dlr (default: the attack's own).")] = None,
    settings: SetOpt = None,
    eps_curve: Annotated[str | None, typer.Option(help="Also an accuracy curve over these eps, e.g. 0,0.1,0.2,0.3.")] = None,
    batch_size: int = 500,
    seed: int = 0,
    per_sample: Annotated[bool, typer.Option(help="Include per-sample flags in the JSON.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write results JSON here.")] = None,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    device: DeviceOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    normalize: NormalizeOpt = None,
    bounds: BoundsOpt = None,
    html: Annotated[Path | None, typer.Option(help="Also write a one-file robustness report (HTML) here.")] = None,
    image_size: ImageSizeOpt = None,
    resize: ResizeOpt = None,
    classes_file: ClassesFileOpt = None,
    download: Annotated[bool, typer.Option(help="Download the dataset if it is not found locally.")] = True,
    attacks: Annotated[str | None, typer.Option(help="Worst case over a cascade: standard, fast or a list such as fgsm,apgd-ce,apgd-t,square (replaces --attack).")] = None,
    state: Annotated[Path | None, typer.Option(help="Resumable state file for --attacks: rerun after Ctrl-C or kill to continue.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Let --state replace an existing file that is not a cascade state file.")] = False,
) -> None:
    """Clean and robust accuracy of a model under an attack (or a cascade); JSON results."""
    from advlab.cli._inputs import apply_inputs, input_wrapper, resolve_device
    from advlab.evaluation import accuracy_vs_eps, evaluate
    from advlab.threat import ThreatModel

    threat = ThreatModel(norm, eps)
    dev, wrap = resolve_device(device), input_wrapper(mean, std, normalize, bounds)
    if html is not None:
        check_output(html, "file", "--html", "report.html")
    # settings are checked before anything is loaded; a cascade (--attacks) takes none of them
    options = {"steps": steps, "step_size": step_size, "rel_step_size": rel_step_size,
               "restarts": restarts, "random_init": random_init, "early_stop": early_stop, "loss": loss}
    if attacks:
        given = [OPTION_FLAGS[k] for k, v in options.items() if v is not None] + (["--set"] if settings else [])
        if given:
            raise UsageError(f"{given[0]} does not apply to --attacks (each cascade stage uses its "
                             "registered settings); use --attack for a single configured attack")
    else:
        atk = build_attack(attack, options, extra=settings, defaults={"early_stop": True}, norm=threat.norm)
    if out is not None:
        check_output(out, "file")
    if state is not None:
        check_output(state, "file", "--state", "run.state")
    net, ds = _common_eval(checkpoint, dataset, split, limit, classes, data_dir, cache_dir, download,
                           image_size=image_size, resize=resize, classes_file=classes_file)
    net = apply_inputs(net, wrap, dev)
    if html is not None:
        from advlab.cli.cmd_evaluation import run_report_eval

        return run_report_eval(net, ds, threat, attacks or atk, html=html, out=out, seed=seed,
                               batch_size=batch_size, state=state, eps_curve=eps_curve, device=dev,
                               meta={"dataset": dataset, "model": checkpoint})
    if attacks:  # issue 3: the cascade lives in cmd_evaluation
        from advlab.cli.cmd_evaluation import run_cascade_eval

        return run_cascade_eval(net, ds, threat, attacks, state=state, seed=seed, batch_size=batch_size, device=dev,
                                per_sample=per_sample, out=out, meta={"dataset": dataset, "model": checkpoint},
                                overwrite=overwrite)
    x, y = (t.to(dev) for t in ds.tensors())
    gen = torch.Generator(device=dev).manual_seed(seed)
    console.print(f"evaluating on {len(ds)} {dataset}/{split} images: {atk!r}, {norm} eps={eps}"
                  + (f" on {dev}" if dev.type != "cpu" else ""))
    res = evaluate(net, x, y, atk, threat, generator=gen, batch_size=batch_size, seed=seed)
    d = res.to_dict(per_sample=per_sample)
    d["dataset"] = dataset
    d["model"] = checkpoint
    if eps_curve:
        curve = accuracy_vs_eps(net, x, y, atk, _parse_floats(eps_curve, "--eps-curve"), norm,
                                generator=torch.Generator(device=dev).manual_seed(seed),
                                batch_size=batch_size)
        d["curve"] = curve.to_dict()
    table = Table(title="advlab eval")
    for col in ("clean acc", "robust acc", "success", "confidence on mistakes", "passes", "time"):
        table.add_column(col)
    table.add_row(f"{res.clean_acc:.2%}", f"{res.robust_acc:.2%}", f"{res.attack_success_rate:.2%}",
                  f"{res.mean_confidence_adv_mistakes or 0:.2%}", str(res.passes), f"{res.seconds:.1f}s")
    console.print(table)
    if out:
        _write_json(out, d)
        console.print(f"results written to {out}")
    else:
        typer.echo(json.dumps(d, default=str))


def _quantize(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """uint8 images whose perturbation is rounded toward zero, so it stays inside the ball."""
    base = torch.round(x * 255)
    delta = torch.trunc((x_adv * 255 - base).clamp(-255, 255))
    return (base + delta).clamp(0, 255).to(torch.uint8)


@app.command("attack")
def attack_cmd(
    checkpoint: Annotated[str, typer.Argument(help="advlab checkpoint dir, or file.py:function returning a model.")],
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/attack"),
    dataset: str = "mnist",
    split: str = "test",
    limit: int | None = 100,
    classes: str | None = None,
    attack: AttackOpt = "pgd",
    norm: str = "linf",
    eps: float = 0.3,
    steps: StepsOpt = None,
    step_size: float | None = None,
    rel_step_size: float | None = None,
    restarts: int | None = None,
    random_init: Annotated[bool | None, typer.Option("--random-init/--no-random-init")] = None,
    target: Annotated[int | None, typer.Option(help="Targeted attack towards this class.")] = None,
    loss: Annotated[str | None, typer.Option(help="ce, cw or dlr (default: the attack's own).")] = None,
    settings: SetOpt = None,
    batch_size: int = 500,
    seed: int = 0,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    device: DeviceOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    normalize: NormalizeOpt = None,
    bounds: BoundsOpt = None,
    image_size: ImageSizeOpt = None,
    resize: ResizeOpt = None,
    classes_file: ClassesFileOpt = None,
    download: Annotated[bool, typer.Option(help="Download the dataset if it is not found locally.")] = True,
) -> None:
    """Craft adversarial examples, save them (uint8 + labels + predictions) and a grid image."""
    from safetensors.torch import save as st_save

    from advlab.criteria import Misclassification, TargetedMisclassification
    from advlab.evaluation import predict
    from advlab.io import atomic_write_bytes
    from advlab.models import confidence
    from advlab.reporting import figures
    from advlab.threat import ThreatModel

    threat = ThreatModel(norm, eps)
    atk = build_attack(attack, {"steps": steps, "step_size": step_size, "rel_step_size": rel_step_size,
                                "restarts": restarts, "random_init": random_init, "loss": loss},
                       extra=settings, defaults={"early_stop": False}, norm=threat.norm)
    check_output(out, "dir")
    from advlab.cli._inputs import apply_inputs, input_wrapper, resolve_device

    dev, wrap = resolve_device(device), input_wrapper(mean, std, normalize, bounds)
    net, ds = _common_eval(checkpoint, dataset, split, limit, classes, data_dir, cache_dir, download,
                           image_size=image_size, resize=resize, classes_file=classes_file)
    net = apply_inputs(net, wrap, dev)
    x, y = (t.to(dev) for t in ds.tensors())
    if target is not None:
        if not 0 <= target < ds.num_classes:
            raise UsageError(f"--target must be in [0, {ds.num_classes - 1}]")
        crit: Any = TargetedMisclassification(torch.full_like(y, target))
    else:
        crit = Misclassification(y)
    gen = torch.Generator(device=dev).manual_seed(seed)
    t0 = time.perf_counter()
    res = atk(net, x, crit, threat=threat, generator=gen, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    adv_u8 = _quantize(x, res.x_adv)
    with torch.no_grad():
        xq = adv_u8.float() / 255
        clean_logits, adv_logits = predict(net, x), predict(net, xq)
    q_success = crit.is_success(adv_logits)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "adversarials.safetensors", st_save({
        "x_adv": adv_u8.cpu().contiguous(), "labels": y.cpu(), "clean_pred": clean_logits.argmax(1).cpu(),
        "adv_pred": adv_logits.argmax(1).cpu()}, metadata={"threat": json.dumps(threat.to_dict())}))
    fig = figures.adversarial_grid(
        x.cpu(), xq.cpu(), clean_logits.argmax(1).tolist(), confidence(net, clean_logits).tolist(),
        adv_logits.argmax(1).tolist(), confidence(net, adv_logits).tolist(), ds.classes,
        labels=y.tolist())
    from advlab.io import atomic_write_bytes as _awb

    _awb(out / "grid.png", figures.figure_to_png(fig))
    summary = {"n_examples": len(ds), "success_rate": res.success_rate,
               "success_rate_uint8": float(q_success.float().mean()) if len(ds) else None,
               "mean_distance": float(threat.strategy.distance(xq, x).mean()) if len(ds) else None,
               "threat": threat.to_dict(), "attack": atk.settings(), "targeted": target is not None,
               "target": target, "seconds": seconds, "passes": int(res.passes.sum()),
               "files": ["adversarials.safetensors", "grid.png"]}
    _write_json(out / "attack.json", summary)
    console.print(f"success rate {res.success_rate:.2%} (after uint8 rounding "
                  f"{summary['success_rate_uint8']:.2%}); wrote {out}/adversarials.safetensors, grid.png")
    typer.echo(json.dumps(summary, default=str))


# ----------------------------------------------------------------------------- lecture


@app.command()
def lecture(
    out: Annotated[Path, typer.Option(help="Report directory (index.html + results.json).")] = Path("lecture-report"),
    quick: Annotated[bool, typer.Option(help="Smaller models and slices (about 2 minutes).")] = False,
    dataset: Annotated[str, typer.Option(help="mnist (falls back to digits if unavailable), fashion-mnist (found in Debian's /usr/share/datasets too) or digits.")] = "mnist",
    sections: Annotated[str | None, typer.Option(help="Only these sections, comma-separated.")] = None,
    seed: int = 0,
    download: Annotated[bool, typer.Option(help="Download the dataset if it is not found locally.")] = True,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
    device: Annotated[str | None, typer.Option(
        help="Train the lecture's models here: cpu, cuda, cuda:N, mps or auto. The trained "
             "models come back to the CPU, where the sections attack them.")] = None,
) -> None:
    """Run the lecture's experiments and write one self-contained HTML report."""
    from advlab.cli._inputs import resolve_device
    from advlab.io import atomic_write_text
    from advlab.reporting.html import render_report
    from advlab.reporting.lecture import LectureContext, run_sections

    t0 = time.perf_counter()
    check_output(out, "dir")
    dev = resolve_device(device) if device is not None else None
    cache = _cache(cache_dir)
    train_ds, test_ds, notices = load_lecture_data(dataset, data_dir, cache, download)
    torch.manual_seed(seed)
    ctx = LectureContext(train=train_ds, test=test_ds, quick=quick, cache_dir=cache / "models",
                         seed=seed, progress=lambda m: console.print(f"[dim]{m}[/]"),
                         device=dev if dev is not None and dev.type != "cpu" else None)
    only = [s.strip() for s in sections.split(",")] if sections else None
    secs = run_sections(ctx, only)
    seconds = time.perf_counter() - t0
    meta = {"version": __version__, "dataset": train_ds.name, "mode": "quick" if quick else "full",
            "seconds": seconds, "seed": seed, "notices": notices,
            "train_device": str(dev) if dev is not None else "cpu",
            "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M")}
    html = render_report("advlab lecture: adversarial examples and adversarial training", secs, meta)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "index.html", html)
    _write_json(out / "results.json", {"meta": meta, "sections": [
        {"key": s.key, "title": s.title, "seconds": s.seconds, "data": s.data} for s in secs]})
    console.print(f"report written to {out / 'index.html'} in {seconds:.0f} s")


@app.command()
def info(
    attack: Annotated[str | None, typer.Option(help="Show this attack's settings and defaults.")] = None,
) -> None:
    """List models, datasets and attacks (or one attack's settings)."""
    from advlab.attacks import REGISTRY, canonical_names, get_entry
    from advlab.data import available_datasets
    from advlab.models import available_models

    if attack is not None:
        try:
            entry = get_entry(attack)
        except ValueError as e:
            raise UsageError(str(e)) from None
        out_console.print(f"{entry.name}: {entry.cls.__name__} - {entry.summary}")
        if entry.aliases:
            out_console.print("aliases: " + ", ".join(entry.aliases))
        if entry.fixed:
            out_console.print("fixed:   " + ", ".join(f"{k}={v!r}" for k, v in entry.fixed.items()))
        defaults = entry.create().settings()
        for key in entry.settings():
            out_console.print(f"  {key} = {defaults[key]!r}")
        return
    out_console.print(f"advlab {__version__}")
    out_console.print("models:   " + ", ".join(available_models()))
    out_console.print("datasets: " + ", ".join(available_datasets()))
    out_console.print("attacks:")
    for name in canonical_names():
        e = REGISTRY[name]
        alias = f" (= {', '.join(e.aliases)})" if e.aliases else ""
        out_console.print(f"  {name}{alias}: {e.summary}")


# Commands of later capabilities live in their own modules and register on ``app`` (importing
# them is what registers them; they take their helpers from ``advlab.cli._common``).
from advlab.cli import cmd_analysis, cmd_defenses, cmd_evaluation, cmd_physical, cmd_transfer  # noqa: E402,F401,I001


def main() -> None:
    """Console entry point.

    Bad input -> one line, exit 2; a failing disk or device -> one line, exit 1; an advlab bug
    -> "internal error, please report it", exit 1. ``--debug`` (anywhere on the command line)
    or ``ADVLAB_DEBUG=1`` also prints the traceback. See :mod:`advlab.cli._errors`.
    """
    from advlab.cli._errors import USAGE, classify

    debug = os.environ.get("ADVLAB_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    if "--debug" in sys.argv[1:]:
        debug = True
        sys.argv = [a for i, a in enumerate(sys.argv) if i == 0 or a != "--debug"]
    logging.basicConfig(level=os.environ.get("ADVLAB_LOGLEVEL", "WARNING"))
    threads = os.environ.get("ADVLAB_THREADS")
    if threads:  # on a busy machine one thread per process avoids oversubscription
        try:
            torch.set_num_threads(max(1, int(threads)))
        except ValueError:
            typer.echo(f"error: ADVLAB_THREADS must be an integer, got {threads!r}", err=True)
            sys.exit(USAGE)
    warnings.simplefilter("default")
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished epochs/results are saved; rerun with --resume")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - every failure becomes one line and an exit code
        code, msg = classify(e)
        if debug:
            import traceback

            traceback.print_exception(e)
        typer.echo(f"error: {msg}", err=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
