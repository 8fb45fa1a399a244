"""``advlab physical ...`` (destruction rates, EOT) and ``advlab rl ...`` (attacks on policies)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from advlab.cli._common import (
    CacheDir,
    DataDir,
    UsageError,
    _cache,
    _load_data,
    _load_model,
    _parse_floats,
    _write_json,
    app,
    console,
    out_console,
)

physical_app = typer.Typer(help="Adversarial examples in the physical world: camera-like transforms, "
                                "destruction rate, expectation over transformation.",
                           no_args_is_help=True)
rl_app = typer.Typer(help="Adversarial attacks on reinforcement-learning policies (Huang et al. 2017).",
                     no_args_is_help=True)
app.add_typer(physical_app, name="physical")
app.add_typer(rl_app, name="rl")


def _names(spec: str, what: str) -> list[str]:
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if not names:
        raise UsageError(f"{what} must be a non-empty comma-separated list, got {spec!r}")
    return names


@physical_app.command("transforms")
def transforms_cmd() -> None:
    """List the named camera-like transforms and their parameters."""
    from advlab.physical import standard_transforms

    for name, t in standard_transforms().items():
        out_console.print(f"{name:11s} {json.dumps(t.settings())}", soft_wrap=True)


@physical_app.command("destruction")
def destruction_cmd(
    checkpoint: Annotated[str, typer.Option("--model", help="advlab checkpoint directory or file.py:function.")],
    dataset: Annotated[str, typer.Option(help="mnist, fashion-mnist, cifar10 or digits.")] = "mnist",
    n: Annotated[int, typer.Option(help="Number of test images.")] = 100,
    attacks: Annotated[str, typer.Option(help="Comma-separated: fgsm, bim, illc, eot.")] = "fgsm,bim,illc,eot",
    eps: Annotated[str, typer.Option(help="Comma-separated Linf budgets on the [0, 1] scale.")] = "0.1,0.2,0.3",
    transforms: Annotated[str, typer.Option(help="Comma-separated transform names (see `advlab physical transforms`) or 'all'.")] = "all",
    steps: Annotated[int, typer.Option(help="Iterations of BIM, ILLC and EOT.")] = 10,
    eot_samples: Annotated[int, typer.Option(help="Transformations per EOT gradient.")] = 8,
    seed: int = 0,
    out: Annotated[Path | None, typer.Option(help="Write the table as JSON here.")] = None,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Destruction rate (Kurakin et al. 2016) of each transform for FGSM, BIM, ILLC and EOT adversarials."""
    from rich.table import Table

    from advlab.physical import (
        create_transform,
        destruction_experiment,
        physical_attacks,
        standard_transforms,
    )

    if n < 1:
        raise UsageError(f"--n must be >= 1, got {n}")
    eps_list = _parse_floats(eps, "--eps")
    if not eps_list:
        raise UsageError("--eps needs at least one value")
    tf = standard_transforms() if transforms.strip().lower() == "all" else {
        k: create_transform(k) for k in _names(transforms, "--transforms")}
    atk = physical_attacks(_names(attacks, "--attacks"), steps=steps, eot_samples=eot_samples)
    model = _load_model(checkpoint)
    ds = _load_data(dataset, "test", data_dir, cache_dir, n, None)
    x, y = ds.tensors()
    t0 = time.perf_counter()
    rep = destruction_experiment(model, x, y, atk, eps_list, tf,
                                 generator=torch.Generator().manual_seed(seed),
                                 progress=lambda m: console.print(f"[dim]{m}[/]"))
    seconds = time.perf_counter() - t0
    table = Table(title=f"destruction rate, {len(ds)} {dataset} test images (clean accuracy {rep.clean_accuracy:.1%})")
    table.add_column("attack")
    table.add_column("eps")
    table.add_column("adv. success")
    for k in tf:
        table.add_column(k)
    for a in atk:
        for e in eps_list:
            rows = [r for r in rep.rows if r.attack == a and r.eps == e]
            table.add_row(a, f"{e:g}", f"{rows[0].adv_success_rate:.1%}",
                          *["n/a" if r.rate is None else f"{r.rate:.1%}" for r in rows])
    console.print(table)
    result = {**rep.to_dict(), "dataset": dataset, "model": checkpoint, "seed": seed, "seconds_total": seconds,
              "attacks": {k: v.settings() for k, v in atk.items()},
              "transforms": {k: v.settings() for k, v in tf.items()}}
    if out is not None:
        _write_json(out, result)
        console.print(f"wrote {out}")
    out_console.print(json.dumps({"n": rep.n, "clean_accuracy": rep.clean_accuracy,
                                  "seconds": round(seconds, 2), "rows": len(rep.rows)}))


# ----------------------------------------------------------------------------- rl


def _dqn_config(env: str, seed: int, steps: int | None):  # type: ignore[no-untyped-def]
    import dataclasses

    from advlab.rl import default_config

    cfg = default_config(env, seed)
    if steps is not None:
        cfg = dataclasses.replace(cfg, total_steps=steps)
    cfg.validate()
    return cfg


def _policy(env: str, seed: int, steps: int | None, cache_dir: Path | None):  # type: ignore[no-untyped-def]
    from advlab.experiments import get_or_train_policy

    cache = _cache(cache_dir) / "rl"
    try:
        cfg = _dqn_config(env, seed, steps)
        return get_or_train_policy(env, cfg, cache,
                             on_eval=lambda s, r: console.print(f"[dim]seed {seed} step {s}: greedy return {r:.1f}[/]"))
    except ImportError as e:
        raise UsageError(str(e)) from None


@rl_app.command("train")
def rl_train(
    env: Annotated[str, typer.Option(help="cartpole (CartPole-v1), seaquest (MinAtar, optional package minatar) or another gymnasium id with vector observations.")] = "cartpole",
    seed: int = 0,
    steps: Annotated[int | None, typer.Option(help="Environment steps (default: 30000 for CartPole, stops early once solved; 100000 for Seaquest).")] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Train a DQN policy (seeded) and cache it under <cache>/rl; reuses the cache."""
    p = _policy(env, seed, steps, cache_dir)
    out_console.print(json.dumps({"env": p.env, "seed": seed, "eval_return": p.eval_return,
                                  "obs_scale": p.obs_scale.tolist(), "train_seconds": round(p.seconds, 1),
                                  "cached": p.seconds == 0.0}))


@rl_app.command("attack")
def rl_attack(
    env: Annotated[str, typer.Option(help="cartpole, seaquest (needs minatar) or a gymnasium id.")] = "cartpole",
    seed: Annotated[int, typer.Option(help="Training seed of the attacked policy.")] = 0,
    source_seed: Annotated[int | None, typer.Option(help="Training seed of the adversary's own policy (transfer); none to skip.")] = 1,
    norms: Annotated[str, typer.Option(help="Comma-separated: linf, l2, l1.")] = "linf,l2,l1",
    eps: Annotated[str, typer.Option(help="Comma-separated budgets, per feature in units of its std (CartPole) or of its range (Seaquest: pixels in [0, 1]).")] = "0,0.05,0.1,0.2,0.5,1",
    episodes: Annotated[int, typer.Option(help="Seeded episodes per point.")] = 10,
    steps: Annotated[int | None, typer.Option(help="DQN training steps (default: 30000 CartPole, 100000 Seaquest).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the curves as JSON here.")] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Mean return vs eps under the per-step FGSM attack, same-norm noise and transfer (Huang et al. 2017)."""
    from rich.table import Table

    from advlab.rl import return_vs_eps

    if episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {episodes}")
    eps_list = _parse_floats(eps, "--eps")
    if not eps_list or min(eps_list) < 0:
        raise UsageError("--eps needs non-negative values")
    norm_list = _names(norms, "--norms")
    target = _policy(env, seed, steps, cache_dir)
    source = _policy(env, source_seed, steps, cache_dir) if source_seed is not None else None
    seeds = list(range(1_000, 1_000 + episodes))
    t0 = time.perf_counter()
    curves = []
    for norm in norm_list:
        console.print(f"[dim]{norm}: {len(eps_list)} budgets x {episodes} episodes[/]")
        c = return_vs_eps(target.q, env, seeds, eps_list, norm=norm, scale=target.obs_scale,
                          source=source.q if source is not None else None,
                          generator=torch.Generator().manual_seed(seed))
        curves.append(c.to_dict())
        table = Table(title=f"{target.env}, {norm}: mean return over {episodes} episodes (clean {c.clean.mean_return:.1f})")
        for col in ("eps", "FGSM", "changed", "noise", "transfer"):
            table.add_column(col)
        d = curves[-1]
        for i, e in enumerate(eps_list):
            table.add_row(f"{e:g}", f"{d['attack_return'][i]:.1f}", f"{d['attack_changed'][i]:.1%}",
                          f"{d['noise_return'][i]:.1f}",
                          f"{d['transfer_return'][i]:.1f}" if "transfer_return" in d else "-")
        console.print(table)
    seconds = time.perf_counter() - t0
    result = {"env": target.env, "seed": seed, "source_seed": source_seed, "episodes": episodes,
              "episode_seeds": seeds, "eps_unit": "per-feature obs_scale (CartPole: std of the policy's observations; MinAtar: pixel range)",
              "obs_scale": target.obs_scale.tolist(), "policy": target.to_dict(), "curves": curves,
              "seconds": seconds}
    if out is not None:
        _write_json(out, result)
        console.print(f"wrote {out}")
    out_console.print(json.dumps({"env": target.env, "clean_return": curves[0]["clean_return"] if curves else None,
                                  "seconds": round(seconds, 1)}))
