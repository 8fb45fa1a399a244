"""Adversarial-training benchmarks: the issue's targets, measured end to end on MNIST.

Recipes (each trains with advlab.defenses.fit, checkpoints every epoch so a killed run
resumes with ``--resume``, then evaluates and writes ``bench/results/adv_training_<recipe>.json``):

* ``fgsm-rs``: fast adversarial training (Wong et al. 2020), Linf eps 0.3, step 0.375,
  cyclic LR, 10 epochs = 1.2M forward+backward example passes; evaluated by PGD-50 with
  restarts on the first 1000 test images.
* ``goodfellow``: Goodfellow et al.'s alpha=0.5 FGSM objective at eps 0.25 next to clean
  training of the same model; FGSM test error of both.
* ``vat``: VAT with 100 labels (10 per class, seeded), the rest of MNIST unlabelled.

Usage (heavy: run under the shared lock)::

    flock "${TMPDIR:-/tmp}/advlab-heavy.lock" nice -n 10 .venv/bin/python bench/adv_training.py fgsm-rs \
        --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _paths import default_data_dir, portable_command  # bench/_paths.py (bench/ is on sys.path)

from advlab.attacks import FGSM, PGD
from advlab.data import load_dataset, normalization_stats
from advlab.defenses import (
    VAT,
    CurveConfig,
    FastFGSMTraining,
    FGSMTraining,
    PGDTraining,
    TrainConfig,
    fit,
)
from advlab.evaluation import evaluate
from advlab.io import atomic_write_json
from advlab.models import create_model
from advlab.threat import ThreatModel

RESULTS = Path(__file__).resolve().parent / "results"


def _settings(train: Any, extra: dict[str, Any]) -> dict[str, Any]:
    mean, std = normalization_stats(train.images)
    base = dict(in_shape=list(train.shape), num_classes=train.num_classes, mean=mean, std=std)
    return {**base, **extra}  # explicit settings (e.g. "mean": 0, "std": 1) win


def _train(name: str, arch: str, extra: dict[str, Any], train: Any, test: Any, cfg: Any,
           objective: Any, curves: CurveConfig | None, cache: Path, resume: bool,
           unlabeled: torch.Tensor | None = None, images: torch.Tensor | None = None,
           labels: torch.Tensor | None = None) -> tuple[torch.nn.Module, Any]:
    torch.manual_seed(cfg.seed)
    model = create_model(arch, **_settings(train, extra))
    ckpt = cache / name
    resume = resume and (ckpt / "train_state.safetensors").is_file()

    def on_epoch(e: Any) -> None:
        print(f"[{name}] epoch {e.epoch}: loss {e.loss:.4f} test acc {e.test_acc:.4f} "
              f"{ {k: round(v, 4) for k, v in e.extra.items()} } {e.passes} passes {e.seconds:.0f}s",
              flush=True)

    res = fit(model, train.images if images is None else images,
              train.labels if labels is None else labels, cfg, objective=objective,
              test=(test.images, test.labels), checkpoint_dir=ckpt, resume=resume,
              meta={"dataset": train.name, "seed": cfg.seed, "bench": name}, on_epoch=on_epoch,
              unlabeled=unlabeled, curves=curves)
    return model, res


def _env() -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M")}


def fgsm_rs(args: argparse.Namespace) -> dict[str, Any]:
    train = load_dataset("mnist", "train", data_dir=args.data_dir, download=False)
    test = load_dataset("mnist", "test", data_dir=args.data_dir, download=False)
    if args.limit:
        train = train.subset(limit=args.limit)
    arch_extra = json.loads(args.settings)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=0,
                      lr_schedule="cyclic")
    if args.pgd_steps:  # PGD-AT hybrid at the same pass budget (steps + 1 passes per example)
        obj = PGDTraining(eps=args.train_eps, steps=args.pgd_steps, step_size=args.step_size)
    else:
        obj = FastFGSMTraining(eps=args.train_eps, step_size=args.step_size,
                               clip_start=args.clip_start, init_scale=args.init_scale,
                               project=not args.no_project)
    curves = CurveConfig(eps=0.3, pgd_steps=10, n=args.curve_n, seed=0)
    model, res = _train(f"fgsm-rs-{args.tag}", args.model, arch_extra, train, test, cfg, obj,
                        curves, args.cache, args.resume)
    x, y = test.subset(limit=args.n_eval).tensors()
    threat = ThreatModel("linf", 0.3)
    t0 = time.perf_counter()
    pgd = PGD(steps=50, rel_step_size=2.5 / 50, random_init=True, restarts=args.restarts,
              early_stop=True)
    ev = evaluate(model, x, y, pgd, threat, generator=torch.Generator().manual_seed(0), seed=0)
    pgd_seconds = time.perf_counter() - t0
    cascade_d: dict[str, Any] | None = None
    if args.cascade:
        from advlab.evaluation.cascade import cascade

        cres = cascade(model, x, y, args.cascade, threat, seed=0,
                       state_path=args.cache / f"fgsm-rs-{args.tag}-cascade.safetensors")
        cascade_d = cres.to_dict()
        assert ev.robust_correct is not None
        worst = ev.robust_correct.cpu() & cres.robust_correct.cpu()
        cascade_d["worst_case_with_pgd_robust_acc"] = float(worst.float().mean())
    return {"recipe": "fgsm-rs", "model": args.model, "model_settings": arch_extra,
            "train": {"n_train": len(train), "epochs": args.epochs, "lr_max": args.lr,
                      "schedule": "cyclic", "batch_size": args.batch_size, "objective": obj.settings(),
                      "passes": res.passes, "seconds": res.seconds,
                      "curves": res.curves()},
            "eval": {**ev.to_dict(), "restarts": args.restarts, "steps": 50,
                     "eval_seconds": pgd_seconds},
            "cascade": cascade_d,
            "targets": {"clean_acc": 0.985, "robust_acc": 0.89, "max_passes": 1_200_000},
            "reference": {"wong2020_fgsm_rs": {"clean": 0.985, "pgd": 0.888},
                          "madry2017_pgd": {"pgd100_20restarts": 0.893, "passes": "~2e8"}},
            "env": _env()}


def goodfellow(args: argparse.Namespace) -> dict[str, Any]:
    train = load_dataset("mnist", "train", data_dir=args.data_dir, download=False)
    test = load_dataset("mnist", "test", data_dir=args.data_dir, download=False)
    if args.limit:
        train = train.subset(limit=args.limit)
    arch_extra = json.loads(args.settings)
    cfg = TrainConfig(epochs=args.epochs, batch_size=100, lr=args.lr, seed=0)
    curves = CurveConfig(eps=0.25, pgd_steps=10, n=args.curve_n, seed=0)
    out: dict[str, Any] = {"recipe": "goodfellow", "model": args.model,
                           "model_settings": arch_extra, "n_train": len(train),
                           "epochs": args.epochs, "eps": 0.25}
    x, y = test.subset(limit=args.n_eval).tensors()
    threat = ThreatModel("linf", 0.25)
    for label, obj in (("clean", None), ("adversarial", FGSMTraining(eps=0.25, alpha=0.5))):
        model, res = _train(f"goodfellow-{label}-{args.tag}", args.model, arch_extra, train, test,
                            cfg, obj, curves, args.cache, args.resume)
        ev = evaluate(model, x, y, FGSM(), threat)
        out[label] = {"passes": res.passes, "seconds": res.seconds, "curves": res.curves(),
                      "clean_error": 1 - ev.clean_acc, "fgsm_error": ev.adv_error_rate,
                      "fgsm_robust_error": 1 - (ev.robust_acc or 0.0), "n_eval": int(x.shape[0])}
    out["reference"] = {"goodfellow2014_maxout": {"fgsm_error_clean_trained": 0.894,
                                                  "fgsm_error_adv_trained": 0.179}}
    out["env"] = _env()
    return out


def vat(args: argparse.Namespace) -> dict[str, Any]:
    from advlab.cli.cmd_defenses import select_labeled

    train = load_dataset("mnist", "train", data_dir=args.data_dir, download=False)
    test = load_dataset("mnist", "test", data_dir=args.data_dir, download=False)
    chosen = select_labeled(train.labels, 100, 10, torch.Generator().manual_seed(0))
    rest = torch.ones(len(train), dtype=torch.bool)
    rest[chosen] = False
    arch_extra = json.loads(args.settings)
    cfg = TrainConfig(epochs=args.epochs, batch_size=100, lr=args.lr, seed=0,
                      lr_schedule="step", unlabeled_batch_size=args.ubs)
    obj = VAT(eps=args.eps, xi=1e-6, iterations=1, entropy_min=args.entropy)
    model, res = _train(f"vat-{args.tag}", args.model, arch_extra, train, test, cfg, obj, None,
                        args.cache, args.resume, unlabeled=train.images[rest],
                        images=train.images[chosen], labels=train.labels[chosen])
    return {"recipe": "vat", "model": args.model, "model_settings": arch_extra, "labels": 100,
            "objective": obj.settings(), "epochs": args.epochs, "lr": args.lr,
            "unlabeled_batch_size": args.ubs, "passes": res.passes, "seconds": res.seconds,
            "test_error": 1 - (res.history[-1].test_acc or 0.0), "curves": res.curves(),
            "target_test_error": 0.02, "reference": {"miyato2017_vat_100_labels": 0.0136},
            "env": _env()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", choices=["fgsm-rs", "goodfellow", "vat"])
    p.add_argument("--data-dir", type=Path, default=default_data_dir(),
                   help="folder with mnist/ (default: $ADVLAB_DATA or ../shared/data)")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "advlab" / "bench")
    p.add_argument("--model", default="cnn")
    p.add_argument("--settings", default='{"channels": [16, 32], "fc": 128}')
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--restarts", type=int, default=10)
    p.add_argument("--cascade", default="apgd-ce",
                   help="cascade stages after PGD (e.g. apgd-ce, fast); '' to skip")
    p.add_argument("--curve-n", type=int, default=500)
    p.add_argument("--eps", type=float, default=2.0, help="vat: L2 eps")
    p.add_argument("--step-size", type=float, default=0.375, help="fgsm-rs: FGSM step (1.25 eps)")
    p.add_argument("--clip-start", action="store_true",
                   help="fgsm-rs: clip the random start to [0, 1] before the gradient")
    p.add_argument("--init-scale", type=float, default=1.0,
                   help="fgsm-rs: random-start radius in eps (N-FGSM: 2)")
    p.add_argument("--no-project", action="store_true", help="fgsm-rs: N-FGSM, no projection")
    p.add_argument("--batch-size", type=int, default=100, help="fgsm-rs: batch size")
    p.add_argument("--train-eps", type=float, default=0.3, help="fgsm-rs: training eps")
    p.add_argument("--pgd-steps", type=int, default=0,
                   help="fgsm-rs: train with PGD-K instead (K + 1 passes per example)")
    p.add_argument("--ubs", type=int, default=250)
    p.add_argument("--entropy", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads (1 is far faster than 2 on a busy 2-core box)")
    p.add_argument("--tag", default="default")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"fgsm-rs": fgsm_rs, "goodfellow": goodfellow, "vat": vat}[args.recipe](args)
    result["command"] = "python bench/adv_training.py " + portable_command(
        sys.argv[1:] if argv is None else argv)
    out = args.out or RESULTS / f"adv_training_{args.recipe.replace('-', '_')}.json"
    atomic_write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k in ("eval", "cascade", "test_error",
                                                                "clean", "adversarial")},
                     default=str)[:3000])


if __name__ == "__main__":
    main()
