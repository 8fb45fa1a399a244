"""Attack speed: advlab vs torchattacks, ART, Foolbox and a bare forward+backward loop.

On ``--n`` MNIST test images and one trained (undefended) Madry CNN, in one process,
times FGSM and PGD-40 (Linf, eps 0.3, step 0.01, no random start) with every library,
computes robust accuracy from each library's returned adversarial inputs with the same
model, and prints a markdown table of seconds and time ratios.

Targets (DESIGN.md, "Performance principles"):

* full-budget PGD-40 within 1.05x of the bare forward+backward loop;
* PGD-40 with per-sample early stop at least 5x faster than torchattacks' PGD-40 on the
  undefended CNN, at equal (not higher) robust accuracy.

Example::

    nice .venv/bin/python bench/attack_speed.py --n 1000 --batch-size 500

Libraries that are not installed are skipped with a printed reason. The model is trained
once (2 epochs of clean Adam on MNIST train) and cached under ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from _paths import portable, portable_command  # bench/_paths.py (bench/ is on sys.path)
from torch import nn

REPO = Path(__file__).resolve().parents[1]

EPS = 0.3
STEP = 0.01
STEPS = 40
ALL_LIBS = ("advlab", "bare", "torchattacks", "art", "foolbox")

# --------------------------------------------------------------------------- setup


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="number of MNIST test images")
    p.add_argument("--batch-size", type=int, default=500, help="batch size for every library")
    p.add_argument("--data-dir", type=Path,
                   default=Path(os.environ.get("ADVLAB_DATA", REPO.parent / "shared" / "data")),
                   help="folder with mnist/ (default: $ADVLAB_DATA or ../shared/data)")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "advlab" / "bench",
                   help="where the trained CNN is cached")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "attack_speed.json",
                   help="JSON results file")
    p.add_argument("--libs", default=",".join(ALL_LIBS),
                   help=f"comma-separated subset of {','.join(ALL_LIBS)}")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed runs per attack (all attacks interleaved; the minimum is reported)")
    args = p.parse_args(argv)
    libs = [s.strip().lower() for s in args.libs.split(",") if s.strip()]
    bad = sorted(set(libs) - set(ALL_LIBS))
    if bad:
        p.error(f"unknown libs {bad}; choose from {','.join(ALL_LIBS)}")
    if args.n < 1 or args.batch_size < 1 or args.repeats < 1:
        p.error("--n, --batch-size and --repeats must be >= 1")
    args.libs = libs
    return args


def get_model(data_dir: Path, cache_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The Madry CNN trained 2 epochs on MNIST train (cached; resumed if interrupted)."""
    from advlab.checkpoint import STATE_FILE, load_model, read_metadata
    from advlab.data import load_dataset
    from advlab.defenses import TrainConfig, fit
    from advlab.models import create_model

    cfg = TrainConfig(epochs=2, lr=1e-3, seed=0)
    ckpt = cache_dir / f"mnist_cnn_clean_e{cfg.epochs}_s{cfg.seed}"
    try:
        if read_metadata(ckpt).get("epochs_done") == cfg.epochs:
            model = load_model(ckpt)
            print(f"model: loaded cached CNN from {ckpt}")
            return model, {"checkpoint": portable(ckpt), "trained_now": False}
    except Exception:  # noqa: BLE001 - no (complete) checkpoint: train below
        pass
    torch.manual_seed(0)
    model = create_model("cnn", in_shape=[1, 28, 28], num_classes=10, mean=[0.1307], std=[0.3081])
    train = load_dataset("mnist", "train", data_dir=data_dir)
    resume = (ckpt / STATE_FILE).is_file()
    print(f"model: training the CNN on MNIST train ({len(train)} images, {cfg.epochs} epochs)"
          f"{' (resuming)' if resume else ''} -> {ckpt}", flush=True)
    t0 = time.perf_counter()
    res = fit(model, train.images, train.labels, cfg, checkpoint_dir=ckpt, resume=resume,
              meta={"dataset": "mnist", "purpose": "bench/attack_speed.py"},
              on_epoch=lambda e: print(f"  epoch {e.epoch}: loss {e.loss:.4f} "
                                       f"train acc {e.train_acc:.4f} ({e.seconds:.0f}s)",
                                       flush=True))
    print(f"model: trained in {time.perf_counter() - t0:.0f}s")
    model = load_model(ckpt)
    return model, {"checkpoint": portable(ckpt), "trained_now": True,
                   "train_seconds": res.seconds}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int) -> float:
    correct = 0
    for s in range(0, x.shape[0], bs):
        correct += int((model(x[s:s + bs]).argmax(1) == y[s:s + bs]).sum())
    return correct / x.shape[0]


def linf_ok(x_adv: torch.Tensor, x: torch.Tensor) -> tuple[float, bool]:
    d = float((x_adv - x).abs().amax()) if x.numel() else 0.0
    inside = d <= EPS + 1e-5 and float(x_adv.min()) >= -1e-6 and float(x_adv.max()) <= 1 + 1e-6
    return d, inside


def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], bs: int
            ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Run a one-batch attack over the data in batches of ``bs``."""
    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([fn(x[s:s + bs], y[s:s + bs]) for s in range(0, x.shape[0], bs)])
    return run


# --------------------------------------------------------------------------- the contenders
# Each builder returns {attack name: run(x, y) -> x_adv} or raises ImportError.

Runner = Callable[[torch.Tensor, torch.Tensor], Any]


def build_bare(model: nn.Module, bs: int, steps: int = STEPS) -> dict[str, Runner]:
    """The minimal loop: forward, input gradient, sign step, clip to ball and box."""
    def loop(steps: int, step: float) -> Runner:
        def one(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            xa = x.clone()
            for _ in range(steps):
                xa.requires_grad_(True)
                loss = nn.functional.cross_entropy(model(xa), y, reduction="sum")
                (g,) = torch.autograd.grad(loss, xa)
                with torch.no_grad():
                    xa = xa + step * g.sign()
                    xa = torch.clamp(torch.min(torch.max(xa, x - EPS), x + EPS), 0.0, 1.0)
            return xa.detach()
        return batched(one, bs)
    return {"FGSM": loop(1, EPS), f"PGD-{STEPS}": loop(steps, STEP)}


def build_advlab(model: nn.Module, bs: int, steps: int = STEPS) -> dict[str, Runner]:
    from advlab.attacks import FGSM, PGD
    from advlab.threat import ThreatModel

    threat = ThreatModel("linf", EPS)
    fgsm = FGSM()
    full = PGD(steps=steps, step_size=STEP, random_init=False)
    early = PGD(steps=steps, step_size=STEP, random_init=False, early_stop=True)

    def wrap(atk: Any) -> Runner:
        return lambda x, y: atk(model, x, y, threat=threat, batch_size=bs)

    def cascade(x: torch.Tensor, y: torch.Tensor) -> SimpleNamespace:
        # Evaluation-style: the cheap attack first, PGD (early stop) only on its survivors.
        first = fgsm(model, x, y, threat=threat, batch_size=bs)
        x_adv, success = first.x_adv.clone(), first.success.clone()
        passes, forwards = first.passes.clone(), first.forwards.clone()
        todo = (~success).nonzero().squeeze(1)
        if todo.numel():
            second = early(model, x[todo], y[todo], threat=threat, batch_size=bs)
            x_adv[todo], success[todo] = second.x_adv, second.success
            passes[todo] += second.passes
            forwards[todo] += second.forwards
        return SimpleNamespace(x_adv=x_adv, passes=passes, forwards=forwards,
                               success_rate=float(success.float().mean()))
    return {"FGSM": wrap(fgsm), f"PGD-{STEPS}": wrap(full),
            f"PGD-{STEPS} early stop": wrap(early),
            f"FGSM, then PGD-{STEPS} early stop": cascade}


def build_torchattacks(model: nn.Module, bs: int, steps: int = STEPS) -> dict[str, Runner]:
    import torchattacks

    fgsm = torchattacks.FGSM(model, eps=EPS)
    pgd = torchattacks.PGD(model, eps=EPS, alpha=STEP, steps=steps, random_start=False)
    return {"FGSM": batched(fgsm, bs), f"PGD-{STEPS}": batched(pgd, bs)}


def build_art(model: nn.Module, bs: int, steps: int = STEPS) -> dict[str, Runner]:
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    logging.getLogger("art").setLevel(logging.WARNING)
    clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                            nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    fgm = FastGradientMethod(clf, norm=np.inf, eps=EPS, batch_size=bs)
    pgd = ProjectedGradientDescent(clf, norm=np.inf, eps=EPS, eps_step=STEP, max_iter=steps,
                                   num_random_init=0, batch_size=bs, verbose=False)

    def wrap(atk: Any) -> Runner:
        def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(atk.generate(x=x.numpy(), y=y.numpy()))
        return run
    return {"FGSM": wrap(fgm), f"PGD-{STEPS}": wrap(pgd)}


def build_foolbox(model: nn.Module, bs: int, steps: int = STEPS) -> dict[str, Runner]:
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    fgsm = fb.attacks.LinfFastGradientAttack(random_start=False)
    bim = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=STEP, steps=steps, random_start=False)

    def wrap(atk: Any) -> Runner:
        def one(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            _, clipped, _ = atk(fmodel, x, y, epsilons=EPS)
            return clipped
        return batched(one, bs)
    return {"FGSM": wrap(fgsm), f"PGD-{STEPS}": wrap(bim)}


BUILDERS = {"advlab": build_advlab, "bare": build_bare, "torchattacks": build_torchattacks,
            "art": build_art, "foolbox": build_foolbox}
DIST = {"advlab": "advlab", "bare": None, "torchattacks": "torchattacks",
        "art": "adversarial-robustness-toolbox", "foolbox": "foolbox"}


def version_of(lib: str) -> str | None:
    dist = DIST[lib]
    if dist is None:
        return None
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- main


def reset_model(model: nn.Module) -> None:
    """Undo what other libraries leave behind (parameter .grad from backward(), train mode)."""
    for p in model.parameters():
        p.grad = None
    model.eval()


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    from advlab.data import load_dataset

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}")
    model, model_info = get_model(args.data_dir, args.cache_dir)
    model.eval()
    test = load_dataset("mnist", "test", data_dir=args.data_dir, limit=args.n)
    x, y = test.tensors()
    bs = min(args.batch_size, x.shape[0])
    clean = accuracy(model, x, y, bs)
    print(f"data: {x.shape[0]} MNIST test images, batch size {bs}; clean accuracy {clean:.4f}")

    runners: dict[tuple[str, str], Runner] = {}
    warmups: dict[tuple[str, str], Runner] = {}
    skipped: dict[str, str] = {}
    versions: dict[str, str | None] = {"torch": torch.__version__, "numpy": np.__version__}
    for lib in args.libs:
        try:
            built = BUILDERS[lib](model, bs)
            cheap = BUILDERS[lib](model, bs, 2)  # same code paths, 2 steps: for the warm-up
        except Exception as e:  # noqa: BLE001 - any import/setup failure means "skip"
            skipped[lib] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            print(f"skip {lib}: {skipped[lib]}")
            continue
        reset_model(model)
        versions[lib] = version_of(lib)
        for name, fn in built.items():
            runners[(lib, name)] = fn
            warmups[(lib, name)] = cheap[name]

    # Warm up once per attack on one full batch (first-call costs: lazy imports, oneDNN
    # primitives for this batch shape), with 2 steps instead of 40 to keep it cheap.
    print("warm-up ...", flush=True)
    for key in list(runners):
        try:
            warmups[key](x[:bs], y[:bs])
        except Exception as e:  # noqa: BLE001
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            print(f"skip {key[0]} {key[1]}: {reason}")
            skipped[f"{key[0]} {key[1]}"] = reason
            del runners[key]
        reset_model(model)

    # Timed runs, all attacks interleaved per repeat; wall clock and process CPU time.
    wall: dict[tuple[str, str], list[float]] = {k: [] for k in runners}
    cpu: dict[tuple[str, str], list[float]] = {k: [] for k in runners}
    load: dict[tuple[str, str], list[float]] = {k: [] for k in runners}
    outputs: dict[tuple[str, str], Any] = {}
    for r in range(args.repeats):
        for key, fn in runners.items():
            gc.collect()
            la = os.getloadavg()[0]
            c0, t0 = time.process_time(), time.perf_counter()
            out = fn(x, y)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            reset_model(model)
            wall[key].append(dt)
            cpu[key].append(dc)
            load[key].append(la)
            outputs[key] = out
            print(f"  [{r + 1}/{args.repeats}] {key[0]:>12} {key[1]:<34} {dt:8.2f}s wall "
                  f"{dc:8.2f}s cpu  (load avg {la:.1f})", flush=True)

    rows: list[dict[str, Any]] = []
    for key in runners:
        lib, name = key
        out = outputs[key]
        info: dict[str, Any] = {}
        if lib == "advlab":
            x_adv = out.x_adv
            info["passes_per_sample"] = float(out.passes.float().mean())
            info["forwards_per_sample"] = float(out.forwards.float().mean())
            info["success_rate"] = float(out.success_rate)
            if "early stop" in name:
                info["passes_histogram"] = torch.bincount(out.passes).tolist()
        else:
            x_adv = out
        x_adv = x_adv.detach().to(torch.float32)
        dmax, inside = linf_ok(x_adv, x)
        rows.append({"library": lib, "attack": name, "robust_acc": accuracy(model, x_adv, y, bs),
                     "seconds": min(wall[key]), "cpu_seconds": min(cpu[key]),
                     "seconds_all": [round(v, 3) for v in wall[key]],
                     "cpu_seconds_all": [round(v, 3) for v in cpu[key]],
                     "load_avg_at_start": [round(v, 2) for v in load[key]],
                     "max_linf": dmax, "valid": inside, **info})

    by = {(r["library"], r["attack"]): r for r in rows}
    pgd = f"PGD-{STEPS}"

    def reference(attack: str) -> str:
        return "FGSM" if attack == "FGSM" else pgd

    for r in rows:
        base = reference(r["attack"])
        bare, adv = by.get(("bare", base)), by.get(("advlab", base))
        r["ratio_vs_bare"] = r["seconds"] / bare["seconds"] if bare else None
        r["ratio_vs_advlab"] = r["seconds"] / adv["seconds"] if adv else None
        r["cpu_ratio_vs_bare"] = r["cpu_seconds"] / bare["cpu_seconds"] if bare else None

    # ---- report
    order = {lib: i for i, lib in enumerate(ALL_LIBS)}
    kind = {"FGSM": 0, pgd: 1, f"{pgd} early stop": 2}
    rows.sort(key=lambda r: (kind.get(r["attack"], 3), order[r["library"]]))
    loads = [v for vs in load.values() for v in vs]
    busy = max(loads, default=0.0) > (os.cpu_count() or 1)
    print()
    print(f"MNIST test n={x.shape[0]}, Madry CNN (clean-trained, clean acc {clean:.4f}), "
          f"Linf eps={EPS}, step={STEP}, no random start, batch size {bs}, "
          f"{torch.get_num_threads()} threads, min of {args.repeats} run(s); "
          f"ratios from wall-clock seconds")
    print()
    print("| library | attack | robust acc | seconds | CPU s | vs bare loop | vs advlab |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        lib = r["library"] + (f" {versions.get(r['library'])}" if versions.get(r["library"]) else "")
        flag = "" if r["valid"] else " (OUTSIDE BALL)"
        print(f"| {lib} | {r['attack']}{flag} | {r['robust_acc']:.4f} | {r['seconds']:.2f} | "
              f"{r['cpu_seconds']:.2f} | {fmt_ratio(r['ratio_vs_bare'])} | "
              f"{fmt_ratio(r['ratio_vs_advlab'])} |")
    print()
    if busy:
        print(f"WARNING: load average reached {max(loads):.1f} on {os.cpu_count()} CPUs during "
              "the timed runs: other processes competed for the CPU, timings are noisy.")
    for lib, why in skipped.items():
        print(f"skipped {lib}: {why}")
    for r in rows:
        if "passes_per_sample" in r:
            print(f"advlab {r['attack']}: {r['passes_per_sample']:.2f} forward+backward + "
                  f"{r['forwards_per_sample']:.2f} forward passes per sample")

    targets: dict[str, Any] = {}
    full, bare_pgd = by.get(("advlab", pgd)), by.get(("bare", pgd))
    if full and bare_pgd:
        ratio = full["seconds"] / bare_pgd["seconds"]
        cratio = full["cpu_seconds"] / bare_pgd["cpu_seconds"]
        targets["full_pgd_vs_bare"] = {"ratio": ratio, "cpu_ratio": cratio, "target": 1.05,
                                       "met": ratio <= 1.05}
        print(f"target 1: advlab full-budget {pgd} / bare loop = {ratio:.3f}x wall, "
              f"{cratio:.3f}x CPU (target <= 1.05x): {'MET' if ratio <= 1.05 else 'MISSED'}")
    ref = by.get(("torchattacks", pgd))
    ref_name = "torchattacks"
    if ref is None:
        ref, ref_name = bare_pgd, "bare loop (torchattacks unavailable)"
    for name, key in ((f"{pgd} early stop", "early_stop_vs_torchattacks"),
                      (f"FGSM, then {pgd} early stop", "cascade_vs_torchattacks")):
        es = by.get(("advlab", name))
        if not (es and ref):
            continue
        speedup = ref["seconds"] / es["seconds"]
        cspeed = ref["cpu_seconds"] / es["cpu_seconds"]
        equal = es["robust_acc"] <= ref["robust_acc"]
        met = speedup >= 5 and equal
        targets[key] = {"reference": ref_name, "speedup": speedup, "cpu_speedup": cspeed,
                        "target": 5.0, "robust_acc": es["robust_acc"],
                        "reference_robust_acc": ref["robust_acc"], "met": met}
        label = "target 2" if key.startswith("early") else "(extra)"
        print(f"{label}: {ref_name} {pgd} / advlab {name} = {speedup:.2f}x faster wall, "
              f"{cspeed:.2f}x CPU (target >= 5x), robust acc {es['robust_acc']:.4f} vs "
              f"{ref['robust_acc']:.4f}: {'MET' if met else 'MISSED'}")

    result = {
        "benchmark": "attack_speed",
        "command": " ".join([Path(sys.executable).name, portable_command(sys.argv)]),
        "settings": {"n": int(x.shape[0]), "batch_size": bs, "eps": EPS, "step_size": STEP,
                     "steps": STEPS, "random_start": False, "norm": "linf",
                     "repeats": args.repeats, "libs": args.libs, "timing": "min over repeats"},
        "environment": {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                        "platform": platform.platform(), "python": platform.python_version(),
                        "device": "cpu", "max_load_avg": max(loads, default=None)},
        "versions": versions,
        "model": {"name": "cnn", "training": "clean, Adam lr 1e-3, 2 epochs, seed 0",
                  "clean_acc": clean, **{k: v for k, v in model_info.items()
                                         if k != "checkpoint"}},
        "rows": rows,
        "targets": targets,
        "skipped": skipped,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
