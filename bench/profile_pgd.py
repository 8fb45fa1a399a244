"""Where does advlab's full-budget PGD spend time beyond the bare forward+backward loop?

Wall-clock ratios of two 100-second runs are at the mercy of other processes on a shared
machine, so this script measures the attack's own overhead separately, with the minimum
of many short runs (a short run is likely to see an uncontended CPU):

1. the CNN's forward+backward step and forward pass on one batch (bare loop, 2 steps);
2. advlab's PGD-40 and the bare loop on a *linear* model (``softmax``), where the model
   costs next to nothing: their difference is advlab's per-step bookkeeping, step and
   projection overhead, which does not depend on the model;
3. the predicted full-budget ratio ``(40 (step + overhead) + forward) / (40 step)``;
4. per-sample forward+backward cost against batch size (what per-sample early stop pays
   as the active batch shrinks);
5. with ``--ops``: ``torch.profiler`` operator table of advlab minus bare on the linear
   model, i.e. which operators the overhead consists of.

Example::

    nice .venv/bin/python bench/profile_pgd.py --ops
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attack_speed as bench  # noqa: E402

PGD = f"PGD-{bench.STEPS}"


def best_time(fn: Callable[[], Any], k: int) -> float:
    """Minimum wall time of ``k`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def op_table(fn: Callable[[], Any]) -> dict[str, tuple[float, int]]:
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {ev.key: (ev.self_cpu_time_total / 1e3, ev.count) for ev in prof.key_averages()}


def main() -> int:
    defaults = bench.parse_args([])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--repeats", type=int, default=15, help="short runs per measurement (min)")
    p.add_argument("--data-dir", type=Path, default=defaults.data_dir)
    p.add_argument("--cache-dir", type=Path, default=defaults.cache_dir)
    p.add_argument("--ops", action="store_true", help="also print the profiler operator table")
    args = p.parse_args()
    from advlab.data import load_dataset
    from advlab.models import create_model

    cnn, _ = bench.get_model(args.data_dir, args.cache_dir)
    cnn.eval()
    bs = args.batch_size
    x, y = load_dataset("mnist", "test", data_dir=args.data_dir, limit=bs).tensors()
    k = args.repeats
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {bs}, "
          f"min of {k} runs each")

    # 1. the CNN's cost per step
    bare2 = bench.build_bare(cnn, bs, 2)[PGD]
    step = best_time(lambda: bare2(x, y), k) / 2

    def fwd() -> None:
        with torch.no_grad():
            cnn(x)
    forward = best_time(fwd, k)
    print(f"CNN forward+backward+step (bare loop): {1000 * step:8.2f} ms per step")
    print(f"CNN forward only:                      {1000 * forward:8.2f} ms")

    # 2. the attack's own overhead, on a model that costs (almost) nothing
    torch.manual_seed(0)
    lin = create_model("softmax", in_shape=[1, 28, 28], num_classes=10).eval()
    adv_lin = bench.build_advlab(lin, bs)[PGD]
    bare_lin = bench.build_bare(lin, bs)[PGD]
    t_adv = best_time(lambda: adv_lin(x, y), 3 * k)
    t_bare = best_time(lambda: bare_lin(x, y), 3 * k)
    per_step = (t_adv - t_bare) / bench.STEPS
    print(f"linear model PGD-40: advlab {1000 * t_adv:7.1f} ms, bare {1000 * t_bare:7.1f} ms "
          f"-> advlab overhead {1000 * per_step:.3f} ms per step "
          f"({100 * per_step / step:.2f}% of a CNN step)")

    # 3. predicted full-budget ratio on the CNN
    full = bench.STEPS * (step + per_step) + forward
    ratio = full / (bench.STEPS * step)
    print(f"predicted advlab/bare for CNN PGD-40: {ratio:.4f}x  (per-step overhead "
          f"{100 * bench.STEPS * per_step / (bench.STEPS * step):.2f}%, final forward "
          f"{100 * forward / (bench.STEPS * step):.2f}%)")

    # 4. early stop: per-sample cost of a pass against batch size
    print("\nper-sample forward+backward+step cost against batch size (CNN):")
    base = None
    for m in (bs, 250, 100, 50, 20, 10, 5, 2, 1):
        if m > bs:
            continue
        fn = bench.build_bare(cnn, m, 2)[PGD]
        t = best_time(lambda fn=fn, m=m: fn(x[:m], y[:m]), k) / 2 / m
        base = base or t
        print(f"  batch {m:4d}: {1000 * t:7.3f} ms per sample  ({t / base:5.2f}x batch {bs})")

    # 5. which operators
    if args.ops:
        ta, tb = op_table(lambda: adv_lin(x, y)), op_table(lambda: bare_lin(x, y))
        rows = []
        for name in set(ta) | set(tb):
            (a, ca), (b, cb) = ta.get(name, (0.0, 0)), tb.get(name, (0.0, 0))
            rows.append((a - b, name, a, ca, b, cb))
        rows.sort(reverse=True)
        print("\nprofiler, linear model PGD-40, advlab minus bare (self CPU ms; one run):")
        print(f"{'operator':<40} {'advlab ms':>10} {'calls':>6} {'bare ms':>9} {'calls':>6} "
              f"{'diff ms':>8}")
        for d, name, a, ca, b, cb in rows[:22]:
            print(f"{name:<40} {a:10.2f} {ca:6d} {b:9.2f} {cb:6d} {d:8.2f}")
        print(f"{'total':<40} {sum(v for v, _ in ta.values()):10.2f} {'':6} "
              f"{sum(v for v, _ in tb.values()):9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
