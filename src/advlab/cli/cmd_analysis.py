"""CLI commands for analysis (register on `advlab.cli.app.app`): ``advlab analyze <name>``."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from advlab import __version__
from advlab.cli._common import (
    CacheDir,
    DataDir,
    UsageError,
    _cache,
    _load_model,
    _write_json,
    app,
    console,
    load_lecture_data,
    out_console,
)

#: every ``advlab analyze`` name (kept equal to ``all_analyses()`` by tests/test_cli_analyze.py)
ANALYSIS_NAMES = ("cross-section", "decision-map", "same-norm", "linear", "class-sweep", "rbf",
                  "noise", "subspace", "generative", "model-based",
                  # photos (ImageNet): advlab.experiments.photo_attacks, photo_maps
                  "panda", "photo-attacks", "class-direction",
                  "photo-cross-section", "photo-decision-map", "photo-noise", "photo-physical",
                  # the lecture's remaining claims: claims, robust_sweep, detectors
                  "xs-and-os", "linear-vs-deep-at", "perturb-layer", "robust-class-sweep", "detectors",
                  # spam detectors, add-only evasion: spam; text VAT: text
                  "spam-evasion", "text-vat")


@app.command("analyze")
def analyze(
    name: Annotated[str, typer.Argument(help="One of: " + ", ".join(ANALYSIS_NAMES) + ".")],
    out: Annotated[Path, typer.Option(help="Output directory (<name>.json and <name>-*.png).")] = Path("runs/analysis"),
    dataset: Annotated[str, typer.Option(help="mnist (falls back to digits if unavailable) or digits.")] = "mnist",
    quick: Annotated[bool, typer.Option(help="Smaller models and slices, as in `advlab lecture --quick`.")] = False,
    n: Annotated[int | None, typer.Option(help="Number of examples (decision-map, subspace, noise).")] = None,
    eps: Annotated[float | None, typer.Option(help="Budget (decision-map, linear, rbf, subspace: L2, noise: FGSM step).")] = None,
    model: Annotated[str | None, typer.Option(help="Checkpoint (or file.py:function) to use instead of the lecture's CNN.")] = None,
    seed: int = 0,
    download: Annotated[bool, typer.Option(help="Download the dataset if it is not found locally.")] = True,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Run one of the lecture's analyses and write its numbers (JSON) and figures (PNG).

    Models are the lecture's recipes, trained once and cached (see `advlab lecture`). The
    numbers come from `advlab.experiments.analysis`; `advlab.reporting` only draws the figures.
    """
    from advlab.experiments import ExperimentContext
    from advlab.experiments.analysis import all_analyses
    from advlab.io import atomic_write_bytes
    from advlab.reporting.figures import figure_to_png
    from advlab.reporting.figures_analysis import FIGURE_DPI, analysis_figures

    ANALYSES = all_analyses()
    key = name.lower().replace("_", "-")
    if key not in ANALYSES:
        raise UsageError(f"unknown analysis {name!r}; use one of {', '.join(ANALYSES)}")
    fn, section_key = ANALYSES[key]
    params: dict[str, object] = {}
    accepted = inspect.signature(fn).parameters
    for opt, value in (("n", n), ("eps", eps)):
        if value is None:
            continue
        if opt not in accepted:
            raise UsageError(f"--{opt} does not apply to the {key} analysis")
        if opt == "n" and value < 1:
            raise UsageError("--n must be a positive integer")
        if opt == "eps" and not value > 0:
            raise UsageError("--eps must be > 0")
        params[opt] = value
    t0 = time.perf_counter()
    cache = _cache(cache_dir)
    train_ds, test_ds, notices = load_lecture_data(dataset, data_dir, cache, download)
    torch.manual_seed(seed)
    ctx = ExperimentContext(train=train_ds, test=test_ds, quick=quick, cache_dir=cache / "models",
                            seed=seed, progress=lambda m: console.print(f"[dim]{m}[/]"))
    if model is not None:
        net = _load_model(model)
        ctx.use_model("cnn", net)  # the analyses' main network
    console.print(f"analysis [bold]{key}[/] on {train_ds.name} ({'quick' if quick else 'full'})")
    res = fn(ctx, **params)
    pngs = {f"{key}-{fig_name}.png": figure_to_png(fig, dpi=FIGURE_DPI)
            for fig_name, fig in analysis_figures(res).items()}
    seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    for fname, png in pngs.items():
        atomic_write_bytes(out / fname, png)
    files = list(pngs)
    result = {"analysis": key, "section": section_key, "dataset": train_ds.name,
              "mode": "quick" if quick else "full", "seed": seed, "params": params,
              "model": model, "version": __version__, "seconds": round(seconds, 2),
              "notices": notices, "figures": files, "data": res.data}
    _write_json(out / f"{key}.json", result)
    console.print(f"wrote {out / (key + '.json')} and {len(files)} figure(s) in {seconds:.0f} s")
    out_console.print(json.dumps({k: result[k] for k in ("analysis", "dataset", "seconds", "figures")}))
