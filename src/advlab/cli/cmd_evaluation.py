"""CLI support for trustworthy evaluation: ``advlab eval --attacks`` (the cascade).

``advlab eval CHECKPOINT --attacks standard --state run.state`` runs the
worst-case cascade of :mod:`advlab.evaluation.cascade`; interrupted (Ctrl-C or
kill), the same command continues from the state file and gives the same
answer. Under ``torchrun --nproc_per_node=N advlab eval ...`` every process
evaluates one shard and rank 0 prints the exactly reduced counts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch import nn

from advlab.cli._common import UsageError, _write_json, console

__all__ = ["run_cascade_eval"]


def _maybe_init_distributed(device: torch.device | None = None) -> tuple[int, int]:
    """Join the process group torchrun describes: nccl when this rank computes on a GPU
    (which becomes the current CUDA device, as nccl needs), gloo otherwise, also on a GPU
    machine run with ``--device cpu``."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        on_gpu = device is not None and device.type == "cuda"
        if on_gpu:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if on_gpu else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def run_cascade_eval(net: nn.Module, ds: Any, threat: Any, spec: str, *, state: Path | None,
                     seed: int, batch_size: int, per_sample: bool, out: Path | None,
                     meta: dict[str, Any], device: torch.device | None = None, overwrite: bool = False) -> None:
    """Run the cascade for ``advlab eval --attacks`` and print/write the results."""
    from advlab.evaluation import make_stages, run_cascade
    from advlab.evaluation.cascade import is_state_file

    stages = make_stages(spec)
    if state is not None and state.exists() and not overwrite and not is_state_file(state):
        raise UsageError(f"--state {state} exists and is not a cascade state file; choose another "
                         "file or pass --overwrite to replace it")
    rank, world = _maybe_init_distributed(device)
    x, y = ds.tensors()
    if device is not None:
        x, y = x.to(device), y.to(device)
    if rank == 0:
        names = ", ".join(n for n, _ in stages)
        console.print(f"cascade on {len(ds)} images ({names}), {threat.norm} eps={threat.eps}"
                      + (f", {world} processes" if world > 1 else "")
                      + (f", state {state}" if state else ""))
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, disable=rank != 0) as progress:
            task = progress.add_task("clean", total=None)

            def on_chunk(name: str, done: int, total: int) -> None:
                progress.update(task, description=name, completed=done, total=total)

            plan = spec if spec.strip().lower() == "auto" else stages  # auto picks its stages
            res = run_cascade(net, x, y, plan, threat, seed=seed, batch_size=batch_size,
                          state_path=state, on_chunk=on_chunk, overwrite=overwrite)
    except KeyboardInterrupt:
        if rank == 0:
            hint = (f"the state is saved in {state}; rerun the same command to continue"
                    if state else "pass --state FILE to make the cascade resumable")
            console.print(f"[yellow]interrupted[/]: {hint}")
        sys.exit(130)
    if rank != 0:
        return
    d = res.to_dict(per_sample=per_sample)
    d.update(meta)
    d["attacks"] = spec
    table = Table(title=f"advlab eval --attacks {spec}")
    for col in ("stage", "attacked", "broken", "robust acc", "passes", "queries", "time"):
        table.add_column(col)
    table.add_row("clean", str(res.n_examples), "", f"{res.clean_acc:.2%}", "", "", "")
    for s in res.stages:
        table.add_row(s.name, str(s.attacked), str(s.broken), f"{s.robust_acc:.2%}",
                      str(s.passes), str(s.forwards), f"{s.seconds:.1f}s")
    console.print(table)
    console.print(f"robust accuracy (worst case over {len(res.stages)} attacks): "
                  f"[bold]{res.robust_acc:.2%}[/]" + (" (resumed)" if res.resumed else ""))
    for w in res.warnings:
        console.print(f"[yellow]warning[/] {w.code}: {w.message}", highlight=False)
    if out:
        _write_json(out, d)
        console.print(f"results written to {out}")
    else:
        sys.stdout.write(json.dumps(d, default=str) + "\n")


def run_report_eval(net: nn.Module, ds: Any, threat: Any, attacks: Any, *, html: Path,
                    out: Path | None, seed: int, batch_size: int, state: Path | None,
                    eps_curve: str | None, device: torch.device, meta: dict[str, Any]) -> None:
    """``advlab eval ... --html FILE``: the evaluation plus its one-file robustness report."""
    import shlex

    from advlab.cli._common import _parse_floats
    from advlab.evaluation.report import robustness_evaluation
    from advlab.reporting.robustness import RobustnessReport

    x, y = (t.to(device) for t in ds.tensors())
    curve: Any = _parse_floats(eps_curve, "--eps-curve") if eps_curve else "default"
    console.print(f"evaluating on {len(ds)} images with a report ({html}); curve eps "
                  f"{curve if curve != 'default' else 'x 0, 0.25, 0.5, 1, 2'}")
    res = robustness_evaluation(net, x, y, threat, attacks, seed=seed, batch_size=batch_size,
                                eps_curve=curve, classes=list(ds.classes), state_path=state,
                                model_name=str(meta.get("model")), data_name=str(meta.get("dataset")),
                                settings={"device": str(device)})
    res.command = "advlab " + shlex.join(sys.argv[1:])
    report = RobustnessReport.from_result(res)
    report.to_html(html)
    console.print(f"robust accuracy {res.robust_accuracy:.2%} (clean {res.clean_accuracy:.2%}) in "
                  f"{res.seconds:.1f} s; report written to {html}")
    for w in res.warnings:
        console.print(f"[yellow]warning[/] {w.code}: {w.message}", highlight=False)
    d = dict(res.to_dict(), **meta)
    if out:
        _write_json(out, d)
    else:
        sys.stdout.write(json.dumps(d, default=str) + "\n")
