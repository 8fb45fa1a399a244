"""Training-epoch time of two advlab trees side by side in one process (refactor guard).

Loads advlab twice in one Python process: the working tree's ``src/`` and another
checkout's ``src/`` (``--baseline``, e.g. a ``git worktree`` of the commit before a
refactor), then alternates one training epoch of each (FGSM-RS and PGD-AT on the
strided CNN, MNIST) and one full-budget attack of each (process CPU time, one thread) (PGD-40, APGD-40 on 1000
images) ``--repeats`` times with the same seed, and prints the median time of each
and their ratio. It also checks that both trees produce the same weights and the
same adversarial examples.

Example::

    git worktree add ../advlab-base <commit>
    .venv/bin/python bench/engine_overhead.py --baseline ../advlab-base --n 6000 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def load_advlab(src: Path) -> dict[str, Any]:
    """Import advlab from ``src`` and return the pieces a training epoch needs."""
    for name in [m for m in sys.modules if m == "advlab" or m.startswith("advlab.")]:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        defenses = importlib.import_module("advlab.defenses")
        models = importlib.import_module("advlab.models")
        data = importlib.import_module("advlab.data")
        attacks = importlib.import_module("advlab.attacks")
        threat = importlib.import_module("advlab.threat")
    finally:
        sys.path.remove(str(src))
    return {"defenses": defenses, "models": models, "data": data, "attacks": attacks, "threat": threat,
            "src": str(src)}


def attack_run(lib: dict[str, Any], kind: str, x: torch.Tensor, y: torch.Tensor,
               seed: int) -> tuple[float, Any]:
    """One full-budget attack on a seeded strided CNN (the cost does not depend on training)."""
    a, m, t = lib["attacks"], lib["models"], lib["threat"]
    torch.manual_seed(seed)
    model = m.create_model("strided-cnn", in_shape=[1, 28, 28], num_classes=10).eval()
    atk = a.PGD(steps=40, step_size=0.01, random_init=False) if kind == "pgd-40" else a.APGD(steps=40)
    t0 = time.process_time()
    r = atk(model, x, y, threat=t.ThreatModel("linf", 0.3), generator=torch.Generator().manual_seed(seed),
            batch_size=500)
    return time.process_time() - t0, [r.x_adv]


def epoch(lib: dict[str, Any], kind: str, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[float, Any]:
    if kind in ("pgd-40", "apgd-40"):
        return attack_run(lib, kind, x[:1000], y[:1000], seed)
    d, m = lib["defenses"], lib["models"]
    torch.manual_seed(seed)
    model = m.create_model("strided-cnn", in_shape=[1, 28, 28], num_classes=10)
    if kind == "fgsm-rs":
        obj = d.FastFGSMTraining(eps=0.3)
        cfg = d.TrainConfig(epochs=1, batch_size=100, lr=5e-3, seed=seed)
    else:
        obj = d.PGDTraining(eps=0.3, steps=7)
        cfg = d.TrainConfig(epochs=1, batch_size=100, lr=1e-3, seed=seed)
    t0 = time.process_time()
    d.fit(model, x, y, cfg, objective=obj)
    return time.process_time() - t0, [p.detach().clone() for p in model.parameters()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, required=True, help="another checkout (its src/ is imported)")
    p.add_argument("--n", type=int, default=6000, help="MNIST training images per epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kinds", default="fgsm-rs,pgd-at,pgd-40,apgd-40",
                   help="training epochs (fgsm-rs, pgd-at) and full-budget attacks on 1000 images "
                        "(pgd-40, apgd-40)")
    p.add_argument("--data-dir", type=Path,
                   default=Path(os.environ.get("ADVLAB_DATA", REPO.parent / "shared" / "data")))
    p.add_argument("--out", type=Path, default=None, help="results JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    libs = {"baseline": load_advlab(args.baseline / "src"), "tree": load_advlab(REPO / "src")}
    ds = libs["tree"]["data"].load_dataset("mnist", "train", data_dir=args.data_dir, limit=args.n)
    x, y = ds.tensors()
    rows: dict[str, Any] = {}
    for name in libs:  # warm-up (first-call costs), not timed
        epoch(libs[name], "fgsm-rs", x[:200], y[:200], seed=0)
    for kind in args.kinds.split(","):
        times: dict[str, list[float]] = {"baseline": [], "tree": []}
        weights: dict[str, Any] = {}
        for r in range(args.repeats):
            order = ("baseline", "tree") if r % 2 == 0 else ("tree", "baseline")
            for name in order:
                t, w = epoch(libs[name], kind, x, y, seed=0)
                times[name].append(t)
                weights[name] = w
        # the same weights (training) or adversarial examples (attacks) from both trees
        same = all(torch.equal(a, b) for a, b in zip(weights["baseline"], weights["tree"], strict=True))
        med = {k: statistics.median(v) for k, v in times.items()}
        # adjacent runs of the two trees form a pair: its ratio cancels the machine's drift
        paired = [t / b for t, b in zip(times["tree"], times["baseline"], strict=True)]
        q = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
        rows[kind] = {"cpu_seconds": times, "median": med, "paired_ratios": paired,
                      "ratio_paired_median": statistics.median(paired),
                      "ratio_paired_quartiles": [q[0], q[2]], "same_weights": same}
        print(f"{kind}: CPU s median baseline {med['baseline']:.2f}, tree {med['tree']:.2f}; "
              f"paired ratio tree/baseline median {statistics.median(paired):.3f} "
              f"(quartiles {q[0]:.3f}-{q[2]:.3f}, {len(paired)} pairs); same weights: {same}",
              flush=True)
    if args.out:
        args.out.write_text(json.dumps({"n": args.n, "repeats": args.repeats, "threads": args.threads,
                                        "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
