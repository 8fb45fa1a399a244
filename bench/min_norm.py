"""Minimum-norm L2 benchmark: advlab FMN and DDN vs adv-lib's and Foolbox's, and CW as the slow reference.

On the first ``--n`` MNIST test images, for the undefended CNN and the PGD-AT model of
``bench/robust_suite.py``, every attack runs untargeted at ``--steps`` steps:

* advlab ``FMN`` (Pintor et al., NeurIPS 2021) and ``DDN`` (Rony et al., CVPR 2019);
* adv-lib's ``fmn(norm=2)`` and ``ddn(levels=None)`` (``pip install --no-deps adv-lib``);
* Foolbox's ``L2FMNAttack`` and ``DDNAttack`` (``epsilons=None``: minimum-norm);
* advlab ``CarliniWagnerL2`` with 9 binary-search steps of ``--cw-steps`` Adam steps
  (Carlini & Wagner, S&P 2017; 9 x 1000 is the slow reference), on the first ``--n-cw``
  images.

Every returned input is checked here (inside [0, 1], misclassified); a failure counts as an
infinite distance. Reported per attack: success rate, median L2 (failures as infinite),
mean L2 over successes, CPU and wall seconds. Optimality follows AttackBench (Cina et al.
2024): each sample's best L2 over all attacks run; ``median_gap`` is the attack's median
over the median of the per-sample best, minus 1, and ``mean_excess`` the mean of
``d / best - 1`` over the samples the attack broke.

adv-lib imports torchvision (for LPIPS) and visdom (for its logger) at import time; neither
is used by FMN or DDN, so empty stand-in modules are registered when they are missing.

Example (2 shared CPU cores: run it under the heavy-job lock)::

    flock "${TMPDIR:-/tmp}/advlab-heavy.lock" nice -n 10 .venv/bin/python bench/min_norm.py \\
        --n 1000 --out bench/results/min_norm.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from robust_eval import version_of as _version  # bench/ is on sys.path
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--n-cw", type=int, default=None, help="images for CW (default --n)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--cw-steps", type=int, default=1000)
    p.add_argument("--cw-search", type=int, default=9)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--models", default="clean,pgd-at")
    p.add_argument("--skip", default="", help="comma-separated: advlib,foolbox,cw")
    p.add_argument("--epochs", type=int, default=5, help="suite recipes (bench/robust_suite.py)")
    p.add_argument("--train-limit", type=int, default=60000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data-dir", type=Path,
                   default=Path(os.environ.get("ADVLAB_DATA", REPO.parent / "shared" / "data")))
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "advlab" / "bench")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "min_norm.json")
    a = p.parse_args(argv)
    a.n_cw = a.n if a.n_cw is None else a.n_cw
    a.models = [m.strip() for m in a.models.split(",") if m.strip()]
    a.skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    for m in a.models:
        if m not in ("clean", "pgd-at"):
            p.error(f"unknown model {m!r}; use clean and/or pgd-at")
    for s in a.skip:
        if s not in ("advlib", "foolbox", "cw"):
            p.error(f"unknown --skip entry {s!r}; use some of advlib, foolbox, cw")
    return a


def _import_adv_lib() -> Any:
    for name in ("torchvision", "torchvision.models", "visdom"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    if not hasattr(sys.modules["torchvision"], "models"):
        sys.modules["torchvision"].models = sys.modules["torchvision.models"]  # type: ignore[attr-defined]
    if not hasattr(sys.modules["visdom"], "Visdom"):
        sys.modules["visdom"].Visdom = object  # type: ignore[attr-defined]
    import adv_lib.attacks

    return adv_lib.attacks


def batched(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
            y: torch.Tensor, bs: int) -> torch.Tensor:
    return torch.cat([fn(x[s:s + bs], y[s:s + bs]).detach() for s in range(0, len(x), bs)])


def distances(model: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
              bs: int) -> torch.Tensor:
    """Per-sample L2 of a verified adversarial input (``inf`` where it is not one)."""
    with torch.no_grad():
        pred = torch.cat([model(x_adv[s:s + bs]).argmax(1) for s in range(0, len(x), bs)])
    inside = (x_adv >= 0).flatten(1).all(1) & (x_adv <= 1).flatten(1).all(1)
    d = (x_adv - x).flatten(1).norm(dim=1).double()
    return torch.where((pred != y) & inside & torch.isfinite(d), d, torch.full_like(d, math.inf))


def stats(d: torch.Tensor, best: torch.Tensor | None = None) -> dict[str, Any]:
    ok = torch.isfinite(d)
    row: dict[str, Any] = {
        "n": int(d.numel()), "success_rate": float(ok.double().mean()),
        "median_l2": float(d.median()) if ok.double().mean() > 0.5 else math.inf,
        "mean_l2_successes": float(d[ok].mean()) if ok.any() else math.nan,
    }
    if best is not None:
        b = best[: d.numel()]
        fin = ok & torch.isfinite(b) & (b > 0)
        row["median_gap"] = float(d.median() / b.median() - 1) if ok.double().mean() > 0.5 else math.inf
        row["mean_excess"] = float((d[fin] / b[fin] - 1).mean()) if fin.any() else math.nan
    return row


def run_model(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              args: argparse.Namespace) -> dict[str, Any]:
    from advlab.attacks import DDN, FMN, CarliniWagnerL2
    from advlab.threat import ThreatModel

    bs, steps = args.batch_size, args.steps
    threat = ThreatModel("l2", 1.0)  # minimum-norm attacks take the norm and the box only
    runs: dict[str, tuple[Callable[[], torch.Tensor], int]] = {
        f"advlab FMN-L2 ({steps})": (lambda: FMN(steps=steps)(model, x, y, threat=threat,
                                                              batch_size=bs).x_adv, len(x)),
        f"advlab DDN ({steps})": (lambda: DDN(steps=steps)(model, x, y, threat=threat,
                                                           batch_size=bs).x_adv, len(x)),
    }
    if "advlib" not in args.skip and _version("adv-lib"):
        al = _import_adv_lib()
        runs[f"adv-lib fmn L2 ({steps})"] = (lambda: batched(
            lambda a, b: al.fmn(model, a, b, norm=2, steps=steps), x, y, bs), len(x))
        runs[f"adv-lib ddn ({steps})"] = (lambda: batched(
            lambda a, b: al.ddn(model, a, b, steps=steps, levels=None), x, y, bs), len(x))
    if "foolbox" not in args.skip and _version("foolbox"):
        import foolbox as fb

        fmodel = fb.PyTorchModel(model, bounds=(0, 1))

        def fb_run(attack: Any) -> Callable[[], torch.Tensor]:
            return lambda: batched(lambda a, b: attack(fmodel, a, b, epsilons=None)[0], x, y, bs)

        runs[f"foolbox L2FMNAttack ({steps})"] = (fb_run(fb.attacks.L2FMNAttack(steps=steps)), len(x))
        runs[f"foolbox DDNAttack ({steps})"] = (fb_run(fb.attacks.DDNAttack(steps=steps)), len(x))
    if "cw" not in args.skip and args.n_cw:
        m = args.n_cw
        cw = CarliniWagnerL2(steps=args.cw_steps, binary_search_steps=args.cw_search)
        runs[f"advlab CW-L2 ({args.cw_search}x{args.cw_steps})"] = (
            lambda: cw(model, x[:m], y[:m], threat=threat, batch_size=bs).x_adv, m)
    out: dict[str, Any] = {"attacks": {}}
    dists: dict[str, torch.Tensor] = {}
    for label, (fn, m) in runs.items():
        t0, c0 = time.perf_counter(), time.process_time()
        xa = fn()
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        dists[label] = distances(model, xa, x[:m], y[:m], bs)
        out["attacks"][label] = {**stats(dists[label]), "seconds": sec, "cpu_seconds": cpu}
        r = out["attacks"][label]
        print(f"[{name}] {label}: success {r['success_rate']:.4f} median {r['median_l2']:.4f} "
              f"mean {r['mean_l2_successes']:.4f} in {cpu:.1f} CPU s", flush=True)
    best = torch.full((len(x),), math.inf, dtype=torch.float64)
    for d in dists.values():
        best[: d.numel()] = torch.minimum(best[: d.numel()], d)
    for label, d in dists.items():
        out["attacks"][label].update({k: v for k, v in stats(d, best).items()
                                      if k in ("median_gap", "mean_excess")})
    out["per_sample_best"] = stats(best)
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import robust_suite  # bench/ is on sys.path

    from advlab.data import load_dataset

    sargs = robust_suite.parse_args(["--epochs", str(args.epochs), "--train-limit",
                                     str(args.train_limit), "--data-dir", str(args.data_dir),
                                     "--cache-dir", str(args.cache_dir)])
    test = load_dataset("mnist", "test", data_dir=args.data_dir, limit=args.n)
    x, y = test.tensors()
    out: dict[str, Any] = {
        "n": args.n, "n_cw": args.n_cw, "steps": args.steps, "cw": [args.cw_search, args.cw_steps],
        "platform": platform.platform(), "python": sys.version.split()[0],
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "versions": {lib: _version(lib) for lib in ("advlab", "adv-lib", "foolbox")},
        "models": {},
    }
    for name in args.models:
        model, info = robust_suite.trained(robust_suite.SUITE[name][2], sargs)
        model.eval()
        out["models"][name] = {**info, **run_model(name, model, x, y, args)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        os.replace(tmp, args.out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
