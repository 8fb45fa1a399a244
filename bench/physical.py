"""Physical-world and RL-policy experiments (issue 7): measured numbers and run times.

Part ``physical``: destruction rates (Kurakin et al. 2016) of FGSM, BIM, ILLC and EOT
adversarial examples on ``--n`` MNIST test images against the lecture's Madry CNN (trained
once and cached exactly as ``advlab lecture`` does), for every camera-like transform, and
the EOT target: EOT's destruction rate under the print-and-photograph preset at most half
of BIM's (the iterative PGD variant without random start).

Part ``rl``: mean return of a seeded DQN (cached under <cache>/rl, as the lecture and
``advlab rl`` do) vs eps under the per-step FGSM attack, same-norm noise and transfer from a
second DQN (Huang et al. 2017), for Linf, L2 and L1; ``--env cartpole`` (CartPole-v1) or
``--env seaquest`` (MinAtar Seaquest, needs the optional package minatar).

Example (run heavy jobs one at a time on the shared machine)::

    flock "${TMPDIR:-/tmp}/advlab-heavy.lock" nice -n 10 .venv/bin/python bench/physical.py \
        --part all --out bench/results/physical.json

Prints markdown tables; writes every number and the wall-clock time of each part.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _paths import default_data_dir, portable  # bench/_paths.py (bench/ is on sys.path)

from advlab.data import load_dataset
from advlab.physical import destruction_experiment, physical_attacks, standard_transforms
from advlab.reporting.lecture import LectureContext


def physical_part(args: argparse.Namespace) -> dict[str, Any]:
    cache = Path(args.cache_dir).expanduser()
    train = load_dataset("mnist", "train", data_dir=args.data_dir, download=False)
    test = load_dataset("mnist", "test", data_dir=args.data_dir, download=False)
    ctx = LectureContext(train=train, test=test, quick=False, cache_dir=cache / "models", seed=args.seed,
                         progress=lambda m: print(m, file=sys.stderr, flush=True))
    model = ctx.model("cnn")
    x, y = test.subset(limit=args.n).tensors()
    eps = [float(e) for e in args.eps.split(",")]
    tf = standard_transforms()
    t0 = time.perf_counter()
    names = [a.strip() for a in args.attacks.split(",")]
    atk = physical_attacks(names, steps=args.steps, eot_samples=args.samples, eot_steps=args.eot_steps)
    rep = destruction_experiment(model, x, y, atk,
                                 eps, tf, generator=torch.Generator().manual_seed(
                                     args.seed if args.eval_seed is None else args.eval_seed),
                                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t0
    print(f"\n### Destruction rate, {args.n} MNIST test images, Madry CNN (clean accuracy "
          f"{rep.clean_accuracy:.1%}), {seconds:.0f} s\n")
    print("| attack | eps | adv. success | eligible | " + " | ".join(tf) + " |")
    print("|---" * (4 + len(tf)) + "|")
    for a in names:
        for e in eps:
            rows = [r for r in rep.rows if r.attack == a and r.eps == e]
            cells = ["n/a" if r.rate is None else f"{r.rate:.1%}" for r in rows]
            print(f"| {a.upper()} | {e:g} | {rows[0].adv_success_rate:.1%} | {rows[0].eligible} | "
                  + " | ".join(cells) + " |")
    target = {}
    for e in eps:
        b, t = rep.rate("bim", e, "photo"), rep.rate("eot", e, "photo")
        target[str(e)] = {"bim_photo": b, "eot_photo": t,
                          "met": b is not None and t is not None and t <= 0.5 * b}
    print("\nEOT target (photo destruction rate at most half of BIM's):",
          {k: v["met"] for k, v in target.items()})
    return {**rep.to_dict(), "eps": eps, "steps": args.steps, "eot_samples": args.samples,
            "eot_steps": args.eot_steps or args.steps, "attacks": {k: v.settings() for k, v in atk.items()},
            "seconds_total": seconds, "eot_target": target,
            "transforms": {k: v.settings() for k, v in tf.items()}}


def rl_part(args: argparse.Namespace) -> dict[str, Any]:
    from advlab.experiments import get_or_train_policy
    from advlab.rl import default_config, return_vs_eps

    cache = Path(args.cache_dir).expanduser() / "rl"
    t0 = time.perf_counter()
    def log(s: int, r: float) -> None:
        print(f"DQN step {s}: greedy return {r:.1f}", file=sys.stderr, flush=True)

    env = args.env
    target = get_or_train_policy(env, default_config(env, args.seed), cache, on_eval=log)
    print(f"target trained/loaded in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    source = (get_or_train_policy(env, default_config(env, args.seed + 1), cache, on_eval=log)
              if args.transfer else None)
    train_seconds = time.perf_counter() - t0
    eps = [float(e) for e in args.rl_eps.split(",")]
    clean_random = None
    if env != "cartpole":
        from advlab.rl import rollout
        from advlab.rl.envs import make_env

        class Uniform(torch.nn.Module):  # the random-play reference: uniform random actions
            def __init__(self, n: int) -> None:
                super().__init__()
                self.n = n
                self.g = torch.Generator().manual_seed(args.seed)
                self.w = torch.nn.Parameter(torch.zeros(1))

            def forward(self, o: torch.Tensor) -> torch.Tensor:
                return torch.rand((o.shape[0], self.n), generator=self.g)

        e = make_env(env)
        n_act = int(e.action_space.n)
        e.close()
        clean_random = rollout(Uniform(n_act), env, list(range(1_000, 1_000 + args.episodes))).mean_return
    seeds = list(range(1_000, 1_000 + args.episodes))
    t0 = time.perf_counter()
    curves = []
    for norm in args.norms.split(","):
        e_norm = [float(v) for v in getattr(args, f"rl_eps_{norm}").split(",")] if getattr(
            args, f"rl_eps_{norm}", None) else eps
        c = return_vs_eps(target.q, env, seeds, e_norm, norm=norm, scale=target.obs_scale,
                          source=source.q if source is not None else None,
                          generator=torch.Generator().manual_seed(args.seed))
        curves.append(c.to_dict())
    seconds = time.perf_counter() - t0
    print(f"\n### {target.env} DQN (best greedy evaluation {target.eval_return:.2f}), mean return over "
          f"{args.episodes} seeded episodes, {seconds:.0f} s (training {train_seconds:.0f} s, 0 when cached)"
          + ("" if clean_random is None else f"; uniform random play: {clean_random:.2f}") + "\n")
    dec = 0 if env == "cartpole" else 2
    for c in curves:
        print("| norm | adversary | " + " | ".join(f"eps={e:g}" for e in c["eps"]) + " |")
        print("|---" * (2 + len(c["eps"])) + "|")
        for key, label in (("attack_return", "FGSM"), ("attack_changed", "actions changed"),
                           ("transfer_return", "FGSM transfer"), ("noise_return", "noise"),
                           ("noise_changed", "actions changed by noise")):
            if key not in c:
                continue
            fmt = (lambda v: f"{v:.0%}") if key.endswith("changed") else (lambda v: f"{v:.{dec}f}")
            print(f"| {c['norm']} | {label} | " + " | ".join(fmt(v) for v in c[key]) + " |")
    unit = ("per-feature std of the attacked policy's observations" if env == "cartpole"
            else "pixel range (observations in {0, 1})")
    return {"env": target.env, "episodes": args.episodes, "episode_seeds": seeds, "eps": eps,
            "eps_unit": unit, "random_play_return": clean_random,
            "policy": target.to_dict(), "source": source.to_dict() if source is not None else None,
            "curves": curves, "seconds": seconds, "train_seconds": train_seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["physical", "rl", "all"], default="all")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--eps", default="0.1,0.2,0.3")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--samples", type=int, default=8, help="EOT transformations per step")
    p.add_argument("--eot-steps", type=int, default=None, help="EOT steps (default --steps)")
    p.add_argument("--attacks", default="fgsm,bim,illc,eot", help="physical part: attacks")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--rl-eps", default="0,0.05,0.1,0.2,0.5,1")
    p.add_argument("--norms", default="linf,l2,l1", help="norms of the RL part")
    p.add_argument("--env", default="cartpole", help="RL part: cartpole or seaquest (needs minatar)")
    p.add_argument("--rl-eps-l2", default=None, help="RL budgets for L2 (default: --rl-eps)")
    p.add_argument("--rl-eps-l1", default=None, help="RL budgets for L1 (default: --rl-eps)")
    p.add_argument("--no-transfer", dest="transfer", action="store_false",
                   help="RL part: skip training the second (transfer) policy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-seed", type=int, default=None,
                   help="physical part: seed of the transform draws and attack randomness (default --seed; "
                        "the model stays the one of --seed)")
    p.add_argument("--data-dir", default=str(default_data_dir()),
                   help="folder with mnist/ (default: $ADVLAB_DATA or ../shared/data)")
    p.add_argument("--cache-dir", default=os.environ.get("ADVLAB_CACHE", "~/.cache/advlab"))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    result: dict[str, Any] = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                          "torch": torch.__version__, "threads": torch.get_num_threads()},
                              "args": {k: portable(v) if k in ("data_dir", "cache_dir", "out") and v else v
                                       for k, v in vars(args).items()}}
    if args.part in ("physical", "all"):
        result["physical"] = physical_part(args)
    if args.part in ("rl", "all"):
        result["rl"] = rl_part(args)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
