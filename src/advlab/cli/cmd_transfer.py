"""CLI commands for transfer (register on `advlab.cli.app.app`).

``advlab transfer matrix | cross-data | ensemble``, ``advlab serve``, ``advlab blackbox``,
``advlab universal``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from torch import nn

from advlab.cli._attacks import build_attack
from advlab.cli._common import (
    CacheDir,
    DataDir,
    UsageError,
    _load_data,
    _load_model,
    _write_json,
    app,
    console,
    out_console,
)

transfer_app = typer.Typer(help="Transferability experiments: matrix, cross-data, ensemble.",
                           no_args_is_help=True)
app.add_typer(transfer_app, name="transfer")

TORCH_FAMILIES = ("softmax", "mlp", "cnn", "strided-cnn", "maxout", "logistic")
SK_FAMILIES = ("lr", "svm", "dt", "knn")
LABELS = {"lr": "LR", "svm": "SVM", "dt": "DT", "knn": "kNN"}


def _train_torch(arch: str, images: torch.Tensor, labels: torch.Tensor, shape: tuple[int, ...],
                 num_classes: int, epochs: int, seed: int) -> nn.Module:
    from advlab.data import normalization_stats
    from advlab.defenses import TrainConfig, fit
    from advlab.models import create_model

    mean, std = normalization_stats(images)
    settings = {"in_shape": list(shape), "num_classes": num_classes, "mean": mean, "std": std}
    torch.manual_seed(seed)
    model = create_model(arch, **settings)
    fit(model, images, labels, TrainConfig(epochs=epochs, lr=1e-3, seed=seed))
    return model.eval()


def _family(spec: str, images: torch.Tensor, labels: torch.Tensor, shape: tuple[int, ...],
            num_classes: int, epochs: int, seed: int) -> tuple[str, Any]:
    """``spec``: a scikit-learn family (lr, svm, dt, knn), a torch architecture, or a checkpoint."""
    from advlab.models.sklearn import create_sklearn_model

    key = spec.lower()
    if key in SK_FAMILIES:
        console.print(f"training scikit-learn {key} on {len(labels)} images")
        return LABELS[key], create_sklearn_model(key).fit(images.float() / 255, labels)
    if key in TORCH_FAMILIES:
        console.print(f"training {key} on {len(labels)} images ({epochs} epoch(s))")
        name = "DNN" if key == "cnn" else key
        return name, _train_torch(key, images, labels, shape, num_classes, epochs, seed)
    if Path(spec).exists() or ":" in spec:
        return Path(spec.split(":")[0]).stem or spec, _load_model(spec)
    raise UsageError(f"unknown model {spec!r}: use {', '.join(SK_FAMILIES + TORCH_FAMILIES)} "
                     "or a checkpoint directory")


def _attack(name: str, steps: int | None) -> Any:
    """The crafting attack of the transfer commands, from the registry (no random start)."""
    if name.lower() not in TRANSFER_ATTACKS:
        raise UsageError(f"--attack must be one of {', '.join(TRANSFER_ATTACKS)}, got {name!r}")
    defaults = {"steps": 10, "random_init": False}
    return build_attack(name, {"steps": steps}, defaults=defaults)


#: attacks the transfer commands craft with (differentiable sources)
TRANSFER_ATTACKS = ("fgsm", "pgd", "bim", "mifgsm", "mi-fgsm")


@transfer_app.command("matrix")
def matrix_cmd(
    models: Annotated[str, typer.Option(help="Comma-separated: cnn/mlp/softmax (torch), lr, svm, dt, knn, or checkpoints.")] = "cnn,lr,svm,dt,knn",
    dataset: str = "mnist",
    train_limit: Annotated[int, typer.Option(help="Training images for every model.")] = 10000,
    n: Annotated[int, typer.Option(help="Test images.")] = 500,
    eps: float = 0.3,
    attack: Annotated[str, typer.Option(help="fgsm or pgd for differentiable sources (DT: tree attack).")] = "fgsm",
    steps: Annotated[int | None, typer.Option(help="Iterations of pgd/bim/mifgsm (default 10).")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs for torch models.")] = 2,
    seed: int = 0,
    out: Annotated[Path, typer.Option(help="Results JSON.")] = Path("runs/transfer_matrix.json"),
    heatmap: Annotated[Path | None, typer.Option(help="Also write the heatmap PNG here.")] = None,
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Cross-technique transfer matrix (Papernot, McDaniel & Goodfellow 2016)."""
    from advlab.analysis.transfer import transfer_matrix
    from advlab.threat import ThreatModel

    train = _load_data(dataset, "train", data_dir, cache_dir, train_limit, None)
    test = _load_data(dataset, "test", data_dir, cache_dir, n, None)
    specs = [s.strip() for s in models.split(",") if s.strip()]
    if not specs:
        raise UsageError("--models is empty")
    fam = dict(_family(s, train.images, train.labels, train.shape, train.num_classes, epochs, seed + i)
               for i, s in enumerate(specs))
    x, y = test.tensors()
    t0 = time.perf_counter()
    m = transfer_matrix(fam, fam, x, y, ThreatModel("linf", eps), attack=_attack(attack, steps),
                        generator=torch.Generator().manual_seed(seed))
    d = m.to_dict()
    d.update({"dataset": dataset, "train_limit": train_limit, "seed": seed, "attack": attack,
              "seconds_total": time.perf_counter() - t0,
              "published": {"LR->DT": 0.874, "source": "Papernot, McDaniel & Goodfellow 2016"}})
    _write_json(out, d)
    if heatmap:
        from advlab.io import atomic_write_bytes
        from advlab.reporting.figures import figure_to_png
        from advlab.reporting.figures_transfer import transfer_heatmap

        atomic_write_bytes(heatmap, figure_to_png(transfer_heatmap(m.rates, m.sources, m.targets)))
    console.print("rows: source, columns: target")
    for s, row in zip(m.sources, m.rates, strict=True):
        console.print(f"{s:>6} " + " ".join(f"{100 * v:6.1f}" for v in row))
    out_console.print(json.dumps({"out": str(out), "rates": m.rates}))


@transfer_app.command("cross-data")
def cross_data_cmd(
    model: Annotated[str, typer.Option(help="Architecture (torch: mlp, cnn, softmax) or scikit-learn family.")] = "mlp",
    dataset: str = "mnist",
    train_limit: Annotated[int, typer.Option(help="Training images, split into two disjoint halves.")] = 20000,
    n: int = 500,
    eps: float = 0.3,
    attack: str = "fgsm",
    steps: Annotated[int | None, typer.Option(help="Iterations of pgd/bim/mifgsm (default 10).")] = None,
    epochs: int = 2,
    seed: int = 0,
    out: Path = Path("runs/transfer_cross_data.json"),
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Same architecture, disjoint halves of the training set: transfer both ways."""
    from advlab.analysis.transfer import cross_training_set
    from advlab.threat import ThreatModel

    train = _load_data(dataset, "train", data_dir, cache_dir, train_limit, None)
    test = _load_data(dataset, "test", data_dir, cache_dir, n, None)
    half = len(train) // 2
    _, a = _family(model, train.images[:half], train.labels[:half], train.shape, train.num_classes,
                   epochs, seed)
    _, b = _family(model, train.images[half:2 * half], train.labels[half:2 * half], train.shape,
                   train.num_classes, epochs, seed + 1)
    x, y = test.tensors()
    r = cross_training_set(a, b, x, y, ThreatModel("linf", eps), attack=_attack(attack, steps),
                           generator=torch.Generator().manual_seed(seed))
    d = {**r.to_dict(), "model": model, "dataset": dataset, "half_size": half, "attack": attack,
         "published": "60-80% for most models (the lecture; Szegedy et al. 2013)"}
    _write_json(out, d)
    out_console.print(json.dumps(d, default=str))


@transfer_app.command("ensemble")
def ensemble_cmd(
    members: Annotated[str, typer.Option(help="Ensemble members (trained on the first half of the slice).")] = "softmax,mlp,cnn",
    held_out: Annotated[str, typer.Option(help="Held-out architecture (trained on the second half, other seed).")] = "cnn",
    dataset: str = "mnist",
    train_limit: int = 20000,
    n: int = 500,
    eps: float = 0.3,
    attack: Annotated[str, typer.Option(help="fgsm, pgd or mifgsm (momentum, Dong et al. 2018).")] = "pgd",
    steps: Annotated[int | None, typer.Option(help="Iterations of pgd/bim/mifgsm (default 10).")] = None,
    combine: Annotated[str, typer.Option(help="Ensemble fusion: prob (Liu et al.) or logits.")] = "prob",
    epochs: int = 2,
    seed: int = 0,
    out: Path = Path("runs/transfer_ensemble.json"),
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """The ensemble attack (Liu et al. 2017) vs single-source transfer to a held-out model."""
    from advlab.analysis.transfer import ensemble_transfer
    from advlab.threat import ThreatModel

    if combine not in ("prob", "logits"):  # bad settings fail before any training
        raise UsageError(f"--combine must be prob or logits, got {combine!r}")
    crafting = _attack(attack, steps)
    train = _load_data(dataset, "train", data_dir, cache_dir, train_limit, None)
    test = _load_data(dataset, "test", data_dir, cache_dir, n, None)
    half = len(train) // 2
    specs = [s.strip() for s in members.split(",") if s.strip()]
    if any(s.lower() in SK_FAMILIES for s in specs + [held_out]):
        raise UsageError("ensemble members and the held-out model must be torch models (softmax, mlp, cnn, ...)")
    mem: dict[str, nn.Module] = {}
    for i, s in enumerate(specs):
        name, m = _family(s, train.images[:half], train.labels[:half], train.shape, train.num_classes,
                          epochs, seed + i)
        mem[name if name not in mem else f"{name}-{i}"] = m
    ho_name, ho = _family(held_out, train.images[half:2 * half], train.labels[half:2 * half], train.shape,
                          train.num_classes, epochs, seed + 100)
    x, y = test.tensors()
    r = ensemble_transfer(mem, ho, x, y, ThreatModel("linf", eps), attack=crafting,
                          generator=torch.Generator().manual_seed(seed), held_out_name=f"held-out {ho_name}",
                          combine=combine)
    d = {**r.to_dict(), "dataset": dataset, "train_limit": train_limit, "combine": combine, "target": 0.95}
    _write_json(out, d)
    out_console.print(json.dumps(d, default=str))


def _in_shape(model: Any) -> tuple[int, ...]:
    shape = getattr(model, "in_shape", None) or getattr(model, "in_shape_", None)
    if shape is None:
        raise UsageError("cannot tell the model's input shape; pass --in-shape C,H,W")
    return tuple(int(s) for s in shape)


@app.command("serve")
def serve_cmd(
    checkpoint: Annotated[str, typer.Argument(help="advlab checkpoint dir, or file.py:function returning a model.")],
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0: any free port).")] = 8000,
    host: Annotated[str, typer.Option(help="Loopback address only: 127.0.0.1 or ::1.")] = "127.0.0.1",
    max_batch: Annotated[int, typer.Option(help="Most images per request.")] = 256,
    max_body_mb: Annotated[float | None, typer.Option(
        help="Largest request body in MiB (default: room for --max-batch images, 1 to 16).")] = None,
    budget: Annotated[int | None, typer.Option(help="Query budget: most images labelled in total.")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="Most requests per second.")] = None,
    in_shape: Annotated[str | None, typer.Option(help="Input shape C,H,W if the model does not say.")] = None,
) -> None:
    """Serve a model as a label-only prediction API on the loopback interface."""
    from advlab.serve import ServeConfig, bind_loopback, create_app
    from advlab.serve.server import _server

    model = _load_model(checkpoint)
    if in_shape and not all(s.strip().isdigit() for s in in_shape.split(",")):
        raise UsageError(f"--in-shape must be C,H,W such as 1,28,28, got {in_shape!r}")
    shape = tuple(int(s) for s in in_shape.split(",")) if in_shape else _in_shape(model)
    cfg = ServeConfig(in_shape=shape, num_classes=getattr(model, "num_classes", None),
                      max_batch=max_batch, max_body_bytes=None if max_body_mb is None else int(max_body_mb * 1024 * 1024),
                      query_budget=budget, rate_limit=rate_limit)
    application = create_app(model, cfg)
    sock = bind_loopback(host, port)
    actual = sock.getsockname()[1]
    console.print(f"serving {checkpoint} on http://{host}:{actual} (POST /predict, GET /info, /stats); "
                  f"budget={budget}, rate limit={rate_limit}/s; Ctrl-C to stop")
    try:
        _server(application, "warning").run(sockets=[sock])
    finally:
        sock.close()
        s = application.state.stats
        console.print(f"served {s.queries} queries in {s.requests} requests ({s.rejected} rejected)")


@app.command("blackbox")
def blackbox_cmd(
    oracle: Annotated[str, typer.Option(help="http://127.0.0.1:PORT of `advlab serve`, or a checkpoint (in-process).")],
    dataset: str = "mnist",
    seed_size: Annotated[int, typer.Option(help="Initial unlabelled test images (the paper: 150).")] = 150,
    substitute_epochs: Annotated[int, typer.Option(help="rho: rounds of label/train/augment.")] = 6,
    augmentation_step: Annotated[float, typer.Option("--lambda", help="Jacobian augmentation step.")] = 0.1,
    sign_period: Annotated[int, typer.Option("--tau", help="The step's sign flips every tau rounds.")] = 3,
    train_epochs: Annotated[int, typer.Option(help="Substitute training epochs per round.")] = 10,
    max_queries: Annotated[int | None, typer.Option(help="Stop asking for labels beyond this many.")] = 6400,
    substitute: Annotated[str, typer.Option(help="Substitute architecture: mlp (2x200), cnn (small: 16/32 ch, fc 128), "
                                            "madry (conv 32/64, fc 1024) or strided (strided-cnn).")] = "mlp",
    craft_loss: Annotated[str, typer.Option(help="FGSM objective on the substitute: ce or cw (logit margin).")] = "ce",
    ensemble: Annotated[int, typer.Option(help="Substitutes to craft on: K-1 more are trained by replaying the "
                                          "rounds on the gathered labels (no extra queries).")] = 1,
    craft_noise: Annotated[float, typer.Option(help="> 0: FGSM on the Gaussian-smoothed substitute, the sign of the "
                                               "gradient averaged over noisy copies with this std.")] = 0.0,
    craft_samples: Annotated[int, typer.Option(help="Noisy copies per gradient with --craft-noise.")] = 32,
    augment: Annotated[str, typer.Option(help="Substitute training augmentation (no queries): none, or affine "
                                         "(rotation +-10 deg, scale 0.9-1.1, shift +-7% of the side).")] = "none",
    eps: float = 0.3,
    n_eval: Annotated[int, typer.Option(help="Test images (after the seed images) to evaluate on.")] = 1000,
    eval_every_round: Annotated[bool, typer.Option(help="Measure oracle misclassification after every round (2 oracle queries per image, counted apart).")] = True,
    seed: int = 0,
    out: Path = Path("runs/blackbox.json"),
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Label-only black-box attack (Papernot et al. 2017): substitute + Jacobian augmentation + FGSM."""
    from advlab.attacks.substitute import SubstituteAttack, substitute_augmentation
    from advlab.models import create_model
    from advlab.threat import ThreatModel

    if craft_loss not in ("ce", "cw"):
        raise UsageError(f"--craft-loss must be ce or cw, got {craft_loss!r}")
    if ensemble < 1:
        raise UsageError(f"--ensemble must be >= 1, got {ensemble}")
    if augment not in ("none", "affine"):
        raise UsageError(f"--augment must be none or affine, got {augment!r}")
    if not 0 <= craft_noise <= 1 or craft_samples < 1:
        raise UsageError(f"--craft-noise must be in [0, 1] and --craft-samples >= 1, got {craft_noise}, {craft_samples}")
    test = _load_data(dataset, "test", data_dir, cache_dir, seed_size + n_eval, None)
    x, y = test.tensors()
    if len(test) <= seed_size:
        raise UsageError(f"need more than {seed_size} test images")
    x_seed, x_eval, y_eval = x[:seed_size], x[seed_size:], y[seed_size:]
    if oracle.startswith(("http://", "https://")):
        from advlab.serve import HTTPOracle

        orc: Any = HTTPOracle(oracle)
        info = orc.info()
        if tuple(info["in_shape"]) != tuple(test.shape):
            raise UsageError(f"the oracle expects inputs of shape {info['in_shape']}, the data has {list(test.shape)}")
        eval_orc: Any = orc
    else:
        from advlab.models.sklearn import TorchClassifier

        orc = TorchClassifier(_load_model(oracle))
        eval_orc = orc
    threat = ThreatModel("linf", eps)
    atk = SubstituteAttack(substitute_epochs=substitute_epochs, augmentation_step=augmentation_step,
                           sign_period=sign_period, train_epochs=train_epochs, max_queries=max_queries,
                           ensemble=ensemble, augment=substitute_augmentation() if augment == "affine" else None)
    torch.manual_seed(seed)
    if substitute == "mlp":
        sub = create_model("mlp", in_shape=list(test.shape), num_classes=test.num_classes, hidden=(200, 200))
    elif substitute == "cnn":
        sub = create_model("cnn", in_shape=list(test.shape), num_classes=test.num_classes,
                           channels=(16, 32), fc=128)
    elif substitute == "madry":
        sub = create_model("cnn", in_shape=list(test.shape), num_classes=test.num_classes)
    elif substitute == "strided":
        sub = create_model("strided-cnn", in_shape=list(test.shape), num_classes=test.num_classes)
    else:
        raise UsageError(f"--substitute must be mlp, cnn, madry or strided, got {substitute!r}")
    from advlab.attacks import FGSM
    from advlab.attacks.base import Attack

    fgsm: Attack = FGSM(loss=craft_loss)
    if craft_noise > 0:
        from advlab.attacks.eot import EOT
        from advlab.transforms import GaussianNoise

        fgsm = EOT(GaussianNoise(craft_noise, straight_through_clip=True), samples=craft_samples, steps=1,
                   step_size=eps, loss=craft_loss)

    def callback(rnd: int, s: SubstituteAttack) -> dict[str, Any]:
        last = rnd == substitute_epochs - 1
        if not (eval_every_round or last) or (last and ensemble > 1):  # the ensemble is measured after fit
            return {}
        r = s.evaluate(eval_orc, x_eval, y_eval, threat, attack=fgsm,
                       generator=torch.Generator().manual_seed(seed))
        console.print(f"round {rnd}: {s.queries_} queries, oracle misclassifies "
                      f"{r['oracle_misclassification']:.2%} of the substitute's FGSM examples")
        return r

    t0 = time.perf_counter()
    atk.fit(orc, x_seed, sub, generator=torch.Generator().manual_seed(seed), callback=callback)
    if ensemble > 1:
        r = atk.evaluate(eval_orc, x_eval, y_eval, threat, attack=fgsm,
                         generator=torch.Generator().manual_seed(seed))
        console.print(f"ensemble of {ensemble} substitutes: oracle misclassifies "
                      f"{r['oracle_misclassification']:.2%} of the crafted examples")
        atk.history_[-1].update(r, ensemble=ensemble)
    d = {"oracle": oracle, "dataset": dataset, "settings": atk.settings(), "substitute": substitute,
         "craft_attack": fgsm.settings(), "queries": atk.queries_, "history": atk.history_, "final": atk.history_[-1],
         "seconds": time.perf_counter() - t0, "seed": seed,
         "published": {"rate": 0.8424, "queries": 6400, "source": "Papernot et al. 2017, MetaMind"}}
    _write_json(out, d)
    out_console.print(json.dumps({"queries": atk.queries_, "final": atk.history_[-1], "out": str(out)},
                                 default=str))


@app.command("universal")
def universal_cmd(
    checkpoint: Annotated[str, typer.Argument(help="advlab checkpoint dir, or file.py:function returning a model.")],
    dataset: str = "mnist",
    norm: Annotated[str, typer.Option(help="linf or l2.")] = "linf",
    eps: float = 0.2,
    n_fit: Annotated[int, typer.Option(help="Test images to fit the perturbation on.")] = 500,
    n_eval: Annotated[int, typer.Option(help="Other test images to measure the fooling rate on.")] = 1000,
    max_passes: int = 5,
    target_fooling_rate: float = 0.8,
    batch_size: Annotated[int, typer.Option(help="1: the paper's sequential algorithm; larger: faster.")] = 1,
    seed: int = 0,
    out: Path = Path("runs/universal"),
    data_dir: DataDir = None,
    cache_dir: CacheDir = None,
) -> None:
    """Fit a universal perturbation (Moosavi-Dezfooli et al. 2017); fooling rate on held-out images."""
    from safetensors.torch import save as st_save

    from advlab.attacks.universal import UniversalPerturbation
    from advlab.io import atomic_write_bytes
    from advlab.reporting.figures import figure_to_png
    from advlab.reporting.figures_transfer import universal_panel
    from advlab.threat import ThreatModel

    model = _load_model(checkpoint)
    test = _load_data(dataset, "test", data_dir, cache_dir, n_fit + n_eval, None)
    x, _ = test.tensors()
    x_fit, x_eval = x[:n_fit], x[n_fit:]
    up = UniversalPerturbation(max_passes=max_passes, target_fooling_rate=target_fooling_rate,
                               batch_size=batch_size)
    t0 = time.perf_counter()
    up.fit(model, x_fit, ThreatModel(norm, eps), generator=torch.Generator().manual_seed(seed))
    fr = up.fooling_rate(model, x_eval) if len(x_eval) else None
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "perturbation.safetensors",
                       st_save({"perturbation": up.perturbation_.contiguous()},
                               metadata={"threat": json.dumps(up.threat_.to_dict())}))
    xs = x_eval[:6] if len(x_eval) else x_fit[:6]
    with torch.no_grad():
        cp, ap = model(xs).argmax(1).tolist(), model(up.transform(xs)).argmax(1).tolist()
    atomic_write_bytes(out / "universal.png", figure_to_png(universal_panel(
        up.perturbation_, xs, up.transform(xs), cp, ap, test.classes)))
    d = {"model": checkpoint, "dataset": dataset, "threat": up.threat_.to_dict(), "settings": up.settings(),
         "fooling_rate_fit": up.fooling_rate_, "fooling_rate_eval": fr, "history": up.history_,
         "passes": up.passes_, "n_fit": n_fit, "n_eval": int(len(x_eval)),
         "seconds": time.perf_counter() - t0, "files": ["perturbation.safetensors", "universal.png"]}
    _write_json(out / "universal.json", d)
    out_console.print(json.dumps(d, default=str))
