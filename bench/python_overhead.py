"""Per-call Python overhead of two advlab trees on a trivial model (the refactor guard's fine print).

On a 16-feature linear model the forward/backward costs almost nothing, so the time per call
of a training perturbation, and per batch of a training epoch, is the library's own Python
overhead. Compare it with a real step (tens of milliseconds for a CNN on 100 MNIST images).

Example::

    .venv/bin/python bench/python_overhead.py --baseline ../advlab-base
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def load(src: Path) -> Any:
    for name in [m for m in sys.modules if m == "advlab" or m.startswith("advlab.")]:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        return importlib.import_module("advlab.defenses"), importlib.import_module("advlab.threat")
    finally:
        sys.path.remove(str(src))


def best_of(fn: Any, calls: int, repeats: int = 5) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls * 1e6)
    return min(out)


def measure(d: Any, t: Any) -> dict[str, float]:
    """Microseconds per call (perturbations) and per batch (training epochs) for one tree."""
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    xs, ys = torch.rand(2000, 1, 4, 4), torch.randint(0, 3, (2000,))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    th = t.ThreatModel("linf", 0.3)
    out = {"perturb_pgd": best_of(lambda: d.perturb_pgd(model, x, y, th, steps=7, step_size=0.05), 300),
           "perturb_fgsm_rs": best_of(lambda: d.perturb_fgsm(model, x, y, th, step_size=0.3,
                                                             random_init=True), 300)}
    for kind, make in (("fgsm-rs", lambda: d.FastFGSMTraining(eps=0.3)),
                       ("pgd-at", lambda: d.PGDTraining(eps=0.3, steps=7))):
        def run(make: Any = make) -> None:
            torch.manual_seed(0)
            m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
            d.fit(m, xs, ys, d.TrainConfig(epochs=1, batch_size=10), objective=make())
        out[f"fit_{kind}"] = best_of(run, 1) / 200  # per batch (200 batches)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, required=True, help="another checkout (its src/ is imported)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name, src in (("baseline", args.baseline / "src"), ("tree", REPO / "src")):
        r = measure(*load(src))
        print(f"{name}: perturb_pgd(7 steps) {r['perturb_pgd']:.0f} us/call, perturb_fgsm(RS) "
              f"{r['perturb_fgsm_rs']:.0f} us/call, fit FGSM-RS {r['fit_fgsm-rs']:.0f} us/batch, "
              f"fit PGD-AT {r['fit_pgd-at']:.0f} us/batch", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
