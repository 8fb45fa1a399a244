"""Measured runs of issue 6: the label-only black-box attack and the MNIST transfer experiments.

    flock "${TMPDIR:-/tmp}/advlab-heavy.lock" nice -n 10 .venv/bin/python bench/blackbox.py blackbox \
        --data-dir ../shared/data --http
    flock "${TMPDIR:-/tmp}/advlab-heavy.lock" nice -n 10 .venv/bin/python bench/blackbox.py matrix \
        --data-dir ../shared/data

``blackbox``: Papernot et al. (2017) against the lecture's MNIST CNN (the cached full-mode
recipe, trained on 60k images), served over HTTP on a loopback port with a 6,400-query
budget (``--http``) or in-process; 150 seed test images, Jacobian augmentation with
lambda = 0.1 flipping every tau = 3 rounds, FGSM at eps = 0.3 on the substitute, oracle
misclassification measured on 1,000 other test images after every round (those
evaluation queries are not attack queries). Also against a decision tree and, if the
lecture has one, an adversarially trained model.

``matrix``: the cross-technique matrix (CNN, LR, SVM, DT, kNN) plus cross-training-set and
ensemble transfer on MNIST.

Results go to ``bench/results/transfer_*.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from _paths import default_data_dir, portable_command  # bench/_paths.py (bench/ is on sys.path)

from advlab.analysis.transfer import cross_training_set, ensemble_transfer, transfer_matrix
from advlab.attacks import FGSM, PGD
from advlab.attacks.momentum import MIFGSM
from advlab.attacks.substitute import SubstituteAttack, substitute_augmentation
from advlab.data import load_dataset
from advlab.models import create_model
from advlab.models.sklearn import SklearnDecisionTree, TorchClassifier, create_sklearn_model
from advlab.reporting.lecture import MODEL_RECIPES, LectureContext, load_sections
from advlab.serve import BackgroundServer, HTTPOracle, ServeConfig, create_app
from advlab.threat import ThreatModel

RESULTS = Path(__file__).resolve().parent / "results"


def _ctx(data_dir: str) -> LectureContext:
    train = load_dataset("mnist", "train", data_dir=data_dir)
    test = load_dataset("mnist", "test", data_dir=data_dir)
    return LectureContext(train=train, test=test, quick=False,
                          cache_dir=Path.home() / ".cache" / "advlab" / "models",
                          progress=lambda m: print(m, file=sys.stderr))


def _substitute(kind: str, shape: tuple[int, ...], seed: int) -> torch.nn.Module:
    """mlp: 2x200; cnn: small CNN (16/32 ch, fc 128); madry: the oracle's architecture
    (conv 32/64, fc 1024, freshly initialised); strided: Wong et al.'s strided CNN."""
    torch.manual_seed(seed)
    if kind == "mlp":
        return create_model("mlp", in_shape=list(shape), num_classes=10, hidden=(200, 200))
    if kind == "madry":
        return create_model("cnn", in_shape=list(shape), num_classes=10)
    if kind == "strided":
        return create_model("strided-cnn", in_shape=list(shape), num_classes=10)
    return create_model("cnn", in_shape=list(shape), num_classes=10, channels=(16, 32), fc=128)


def _substitute_ensemble(atk: SubstituteAttack, args: argparse.Namespace, shape: tuple[int, ...],
                         eval_oracle: Any, x_eval: torch.Tensor, y_eval: torch.Tensor, threat: ThreatModel,
                         fgsm: FGSM, name: str) -> dict[str, Any]:
    """Extra substitutes (other seeds) trained on the same oracle-labelled set: no new queries.

    FGSM then runs on the mean of their logits and the fitted substitute's (the ensemble idea of
    Liu et al. 2017 applied on the attacker's side). Each extra trains ``2 * train_epochs`` epochs.
    """
    import copy

    from advlab.models.ensemble import EnsembleModel

    t0 = time.perf_counter()
    q0 = atk.queries_
    subs = [atk.substitute_]
    gen = torch.Generator().manual_seed(args.seed + 1000)
    for k in range(args.extra_substitutes):
        m = _substitute(args.substitute, shape, args.seed + 1 + k)
        opt = torch.optim.Adam(m.parameters(), lr=atk.lr)
        trainer = copy.copy(atk)
        trainer.train_epochs = 2 * atk.train_epochs
        trainer._train(m, atk.train_x_, atk.train_y_, opt, gen)
        for p in m.parameters():
            p.requires_grad_(False)
        subs.append(m)
    out: dict[str, Any] = {"substitutes": len(subs), "combine": "logits",
                           "extra_train_epochs": 2 * atk.train_epochs,
                           "attack_queries_added": atk.queries_ - q0}
    view = copy.copy(atk)
    view.substitute_ = EnsembleModel(subs, combine="logits").eval()
    pgd = PGD(steps=10, random_init=False)
    for key, a in (("FGSM-" + fgsm.loss, fgsm), ("PGD-10 (no random start)", pgd)):
        out[key] = view.evaluate(eval_oracle, x_eval, y_eval, threat, attack=a,
                                 generator=torch.Generator().manual_seed(args.seed))["oracle_misclassification"]
        print(f"[{name}] ensemble of {len(subs)} substitutes, {key}: {out[key]:.2%}", file=sys.stderr)
    out["seconds"] = time.perf_counter() - t0
    return out


def run_blackbox(oracle: Any, name: str, x_seed: torch.Tensor, x_eval: torch.Tensor,
                 y_eval: torch.Tensor, args: argparse.Namespace, http_model: torch.nn.Module | None,
                 eval_oracle: Any) -> dict[str, Any]:
    threat = ThreatModel("linf", args.eps)
    atk = SubstituteAttack(substitute_epochs=args.rho, augmentation_step=0.1, sign_period=3,
                           train_epochs=args.train_epochs, max_queries=args.max_queries,
                           ensemble=args.ensemble,
                           augment=substitute_augmentation() if args.augment == "affine" else None)
    fgsm = FGSM(loss=args.craft_loss)
    smooth = None
    if args.craft_noise > 0:  # FGSM on the Gaussian-smoothed substitute: one step, averaged gradient
        from advlab.attacks.eot import EOT
        from advlab.transforms import GaussianNoise

        smooth = EOT(GaussianNoise(args.craft_noise, straight_through_clip=True), samples=args.craft_samples,
                     steps=1, step_size=args.eps, loss=args.craft_loss)

    def cb(rnd: int, s: SubstituteAttack) -> dict[str, Any]:
        r = s.evaluate(eval_oracle, x_eval, y_eval, threat, attack=fgsm, with_true_labels=True,
                       generator=torch.Generator().manual_seed(args.seed))
        print(f"[{name}] round {rnd}: {s.queries_} queries, train set {s.train_x_.shape[0]}, oracle "
              f"misclassification {r['oracle_misclassification']:.2%} (crafted with true labels: "
              f"{r['oracle_misclassification_true_labels']:.2%})", file=sys.stderr)
        out = {k: v for k, v in r.items() if k != "threat"}
        if rnd == args.rho - 1:  # extra rows on the final substitute (evaluation queries only)
            extra = {"FGSM-" + other: FGSM(loss=other) for other in ("ce", "cw") if other != args.craft_loss}
            extra["PGD-10 (no random start)"] = PGD(steps=10, random_init=False)
            extra["MI-FGSM-10"] = MIFGSM(steps=10, decay=1.0)
            if smooth is not None:
                extra[f"noise-FGSM (sigma {args.craft_noise}, {args.craft_samples} samples)"] = smooth
            out["final_extra_attacks"] = {}
            for key, a in extra.items():
                e = s.evaluate(eval_oracle, x_eval, y_eval, threat, attack=a,
                               generator=torch.Generator().manual_seed(args.seed))
                out["final_extra_attacks"][key] = e["oracle_misclassification"]
                print(f"[{name}] final substitute, {key}: oracle misclassification "
                      f"{e['oracle_misclassification']:.2%}", file=sys.stderr)
        return out

    t0 = time.perf_counter()
    served: dict[str, Any] = {}
    if http_model is not None:
        app = create_app(http_model, ServeConfig(in_shape=tuple(x_seed.shape[1:]), num_classes=10,
                                                 query_budget=args.max_queries))
        with BackgroundServer(app) as srv:
            orc = HTTPOracle(srv.url, batch_size=256)
            atk.fit(orc, x_seed, _substitute(args.substitute, tuple(x_seed.shape[1:]), args.seed),
                    generator=torch.Generator().manual_seed(args.seed), callback=cb)
            served = {"url": srv.url, "server_queries": app.state.stats.queries,
                      "server_requests": app.state.stats.requests, "budget": args.max_queries}
    else:
        atk.fit(oracle, x_seed, _substitute(args.substitute, tuple(x_seed.shape[1:]), args.seed),
                generator=torch.Generator().manual_seed(args.seed), callback=cb)
    replayed = None
    if args.ensemble > 1:  # the library's substitute ensemble: rounds replayed on the gathered labels
        replayed = {"substitutes": args.ensemble, "combine": "logits", "attack_queries": atk.queries_}
        rows = {"FGSM-" + args.craft_loss: fgsm, "PGD-10 (no random start)": PGD(steps=10, random_init=False)}
        if smooth is not None:
            rows[f"noise-FGSM (sigma {args.craft_noise}, {args.craft_samples} samples)"] = smooth
        for key, a in rows.items():
            r = atk.evaluate(eval_oracle, x_eval, y_eval, threat, attack=a, with_true_labels=True,
                             generator=torch.Generator().manual_seed(args.seed))
            replayed[key] = r["oracle_misclassification"]
            replayed[key + " (true labels)"] = r["oracle_misclassification_true_labels"]
            print(f"[{name}] ensemble of {args.ensemble} substitutes, {key}: "
                  f"{r['oracle_misclassification']:.2%}", file=sys.stderr)
    ens = _substitute_ensemble(atk, args, tuple(x_seed.shape[1:]), eval_oracle, x_eval, y_eval, threat,
                               fgsm, name) if args.extra_substitutes else None
    return {"oracle": name, "queries": atk.queries_, "history": atk.history_, "final": atk.history_[-1],
            "substitute_ensemble": ens, "replayed_ensemble": replayed, "seconds": time.perf_counter() - t0,
            "settings": atk.settings(), "substitute": args.substitute, "craft_attack": fgsm.settings(),
            "smooth_craft_attack": smooth.settings() if smooth is not None else None,
            "http": served or None}


def blackbox(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    ctx = _ctx(args.data_dir)
    cnn = ctx.model("cnn")
    x, y = ctx.test.subset(limit=150 + args.n_eval).tensors()
    x_seed, x_eval, y_eval = x[:150], x[150:], y[150:]
    runs = []
    with torch.no_grad():
        acc = float((cnn(x_eval).argmax(1) == y_eval).float().mean())
    print(f"oracle CNN clean accuracy on the evaluation images: {acc:.2%}", file=sys.stderr)
    if args.http:
        runs.append(run_blackbox(None, "MNIST CNN (lecture recipe) over HTTP", x_seed, x_eval, y_eval, args,
                                 cnn, TorchClassifier(cnn)))
    else:
        runs.append(run_blackbox(TorchClassifier(cnn), "MNIST CNN (lecture recipe, in-process)", x_seed,
                                 x_eval, y_eval, args, None, TorchClassifier(cnn)))
    if not args.cnn_only:
        xt, yt = ctx.train.subset(limit=10000).tensors()
        dt = SklearnDecisionTree().fit(xt, yt)
        runs.append(run_blackbox(dt, "decision tree (10k MNIST images)", x_seed, x_eval, y_eval, args,
                                 None, dt))
        # an adversarially trained CNN: --adv-checkpoint, else the FGSM-RS model that
        # bench/robust_eval.py caches, else a lecture recipe with "adv" in its name
        from advlab.checkpoint import load_model

        cands = [Path(args.adv_checkpoint)] if args.adv_checkpoint else sorted(
            (Path.home() / ".cache" / "advlab" / "bench").glob("mnist_cnn_fgsmrs_*"))
        cands = [c for c in cands if (c / "model.safetensors").is_file()]
        load_sections()
        recipes = [k for k in MODEL_RECIPES if "adv" in k or "madry" in k]
        adv_model, adv_name = None, None
        if cands:
            adv_model = load_model(cands[-1]).eval()
            adv_name = f"adversarially trained CNN ({cands[-1].name})"
        elif recipes:
            adv_model, adv_name = ctx.model(recipes[0]), f"adversarially trained ({recipes[0]})"
        if adv_model is not None:
            runs.append(run_blackbox(TorchClassifier(adv_model), str(adv_name), x_seed, x_eval, y_eval, args,
                                     None, TorchClassifier(adv_model)))
        else:
            print("no adversarially trained model found; skipped", file=sys.stderr)
    out = {"experiment": "label-only black-box attack (Papernot et al. 2017)", "eps": args.eps,
           "seed_images": 150, "n_eval": int(x_eval.shape[0]), "oracle_clean_acc": acc, "runs": runs,
           "published": {"rate": 0.8424, "queries": 6400, "source": "Papernot et al. 2017, MetaMind"},
           "target": {"rate": 0.8, "max_queries": 6400}, "torch_threads": args.threads,
           "command": portable_command(sys.argv)}
    path = RESULTS / f"transfer_blackbox{args.suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps({r["oracle"]: {"queries": r["queries"],
                                    "misclassification": r["final"].get("oracle_misclassification")}
                      for r in runs}, indent=1))


def _train(arch: str, images: torch.Tensor, labels: torch.Tensor, seed: int, epochs: int = 2,
           **settings: Any) -> torch.nn.Module:
    from advlab.defenses import TrainConfig, fit

    xf = images.float() / 255
    torch.manual_seed(seed)
    net = create_model(arch, in_shape=list(images.shape[1:]), num_classes=10, mean=xf.mean().item(),
                       std=xf.std().item(), **settings)
    fit(net, images, labels, TrainConfig(epochs=epochs, lr=1e-3, seed=seed))
    return net.eval()


def _cached_member(tag: str, arch: str, images: torch.Tensor, labels: torch.Tensor, seed: int, epochs: int,
                   **settings: Any) -> torch.nn.Module:
    """Train once and keep under ~/.cache/advlab/bench/transfer-member-<tag> (seed != the held-out's 0)."""
    from advlab.checkpoint import load_model, save_model

    d = Path.home() / ".cache" / "advlab" / "bench" / f"transfer-member-{tag}"
    if (d / "model.safetensors").is_file():
        return load_model(d).eval()
    t0 = time.perf_counter()
    net = _train(arch, images, labels, seed, epochs=epochs, **settings)
    save_model(d, net, {"bench": f"transfer-member-{tag}", "seed": seed, "epochs": epochs,
                        "n_train": int(images.shape[0])})
    print(f"trained member {tag} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return net


def ensemble(args: argparse.Namespace) -> None:
    """Held-out lecture CNN (seed 0, 60k images, 2 epochs), never used to craft.

    ``--members-set small`` (the first measurement): softmax, an MLP and a small CNN on the first
    10k images. ``--members-set full60k``: members trained on all 60k images with other seeds,
    as Liu et al. (2017) attack an ensemble of the other ImageNet models: (a) CNNs: Madry CNN seed 1,
    a narrow Madry CNN (16/32 ch, fc 256) seed 3, the strided CNN seed 2; (b) no member with the
    held-out's architecture: strided CNN, MLP 256x256 (60k), softmax.
    """
    torch.set_num_threads(args.threads)
    ctx = _ctx(args.data_dir)
    x, y = ctx.test.subset(limit=args.n_eval).tensors()
    threat = ThreatModel("linf", args.eps)
    cnn = ctx.model("cnn")
    pgd10 = PGD(steps=10, random_init=False)
    mi10 = MIFGSM(steps=10, decay=1.0)
    if args.members_set == "small":
        tr = ctx.train.subset(limit=args.train_limit)
        mlp_a = _train("mlp", tr.images, tr.labels, 1)
        small = _train("cnn", tr.images, tr.labels, 3, epochs=1, channels=(16, 32), fc=128)
        sets = {"softmax + MLP + small CNN (10k)": {"softmax": ctx.model("softmax"), "MLP": mlp_a,
                                                    "small CNN": small}}
        plan = [("FGSM", FGSM(), "prob"), ("PGD-10", pgd10, "prob"),
                ("PGD-20", PGD(steps=20, random_init=False), "prob")]
        desc = ("softmax (lecture recipe), MLP 256x256 and small CNN (16/32 ch, fc 128) trained on "
                f"the first {args.train_limit} training images")
    else:
        im, lab = ctx.train.images, ctx.train.labels
        strided = _cached_member("strided-s2", "strided-cnn", im, lab, 2, 2)
        cnn_s1 = _cached_member("cnn-s1", "cnn", im, lab, 1, 1)
        narrow = _cached_member("cnn-s3-narrow", "cnn", im, lab, 3, 1, channels=(16, 32), fc=256)
        mlp60 = _cached_member("mlp-s4", "mlp", im, lab, 4, 2)
        sets = {"CNNs: Madry CNN s1 + narrow CNN s3 + strided CNN s2 (60k)":
                    {"Madry CNN s1": cnn_s1, "narrow CNN s3": narrow, "strided CNN s2": strided},
                "other architectures: strided CNN s2 + MLP s4 (60k) + softmax":
                    {"strided CNN s2": strided, "MLP s4": mlp60, "softmax": ctx.model("softmax")}}
        plan = [("FGSM", FGSM(), "prob"), ("PGD-10", pgd10, "prob"), ("MI-FGSM-10", mi10, "prob"),
                ("PGD-10", pgd10, "logits"), ("MI-FGSM-10", mi10, "logits")]
        desc = "members trained on all 60k training images with seeds 1-4 (the held-out CNN: seed 0)"
    runs: dict[str, Any] = {}
    for set_name, members in sets.items():
        for name, atk, comb in plan:
            key = f"{set_name} | {name} | {comb}"
            t0 = time.perf_counter()
            r = ensemble_transfer(members, cnn, x, y, threat, attack=atk, held_out_name="CNN",
                                  combine=comb).to_dict()
            r["seconds"] = time.perf_counter() - t0
            runs[key] = r
            print(f"ensemble -> CNN ({key}): {r['ensemble_rate']:.3f}",
                  {k: round(v, 3) for k, v in r["single_rates"].items()}, file=sys.stderr)
    with torch.no_grad():
        accs = {k: float((m(x).argmax(1) == y).float().mean()) for s in sets.values() for k, m in s.items()}
        accs["held-out CNN"] = float((cnn(x).argmax(1) == y).float().mean())
    out = {"experiment": "ensemble attack (Liu et al. 2017), held-out lecture CNN (60k, 2 epochs, seed 0)",
           "members": desc, "members_set": args.members_set, "clean_acc": accs, "runs": runs, "target": 0.95,
           "eps": args.eps, "n_eval": int(x.shape[0]), "torch_threads": args.threads,
           "command": portable_command(sys.argv)}
    path = RESULTS / f"transfer_ensemble{args.suffix}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")


def matrix(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    ctx = _ctx(args.data_dir)
    xt, yt = ctx.train.subset(limit=args.train_limit).tensors()
    x, y = ctx.test.subset(limit=args.n_eval).tensors()
    threat = ThreatModel("linf", args.eps)
    models: dict[str, Any] = {"DNN": ctx.model("cnn")}
    fit_s = {}
    for key, label in (("lr", "LR"), ("svm", "SVM"), ("dt", "DT"), ("knn", "kNN")):
        t0 = time.perf_counter()
        models[label] = create_sklearn_model(key).fit(xt, yt)
        fit_s[label] = time.perf_counter() - t0
        print(f"fitted {label} in {fit_s[label]:.1f}s", file=sys.stderr)
    m = transfer_matrix(models, models, x, y, threat, attack=FGSM())
    out: dict[str, Any] = {"experiment": "cross-technique transfer matrix (Papernot et al. 2016)",
                           "matrix": m.to_dict(), "sklearn_train_images": args.train_limit,
                           "dnn": "lecture CNN recipe (60k images, 2 epochs)", "fit_seconds": fit_s,
                           "published": {"LR->DT": 0.874}}
    print("rows: source, columns: target", file=sys.stderr)
    for s, row in zip(m.sources, m.rates, strict=True):
        print(f"{s:>5} " + " ".join(f"{100 * v:6.1f}" for v in row), file=sys.stderr)
    # cross-training-set: two MLPs on disjoint halves of 20k images
    half = args.train_limit
    tr = ctx.train.subset(limit=2 * half)
    a = _train("mlp", tr.images[:half], tr.labels[:half], 1)
    b = _train("mlp", tr.images[half:], tr.labels[half:], 2)
    out["cross_training_set"] = {
        name: cross_training_set(a, b, x, y, threat, attack=atk).to_dict()
        for name, atk in (("FGSM", FGSM()), ("PGD-10", PGD(steps=10, random_init=False)))}
    out["cross_training_set"]["published"] = "60-80% (the lecture)"
    out["cross_training_set"]["half_size"] = half
    print("cross-training-set:", json.dumps(out["cross_training_set"], default=str), file=sys.stderr)
    cnn = ctx.model("cnn")
    setups = {"CNN": (cnn, {"softmax": ctx.model("softmax"), "MLP half A": a, "MLP half B": b}),
              "MLP half B": (b, {"softmax": ctx.model("softmax"), "MLP half A": a, "CNN": cnn})}
    ens: dict[str, Any] = {}
    for held_name, (held, members) in setups.items():
        for name, atk in (("FGSM", FGSM()), ("PGD-10", PGD(steps=10, random_init=False))):
            key = f"held-out {held_name}, {name}"
            ens[key] = ensemble_transfer(members, held, x, y, threat, attack=atk,
                                         held_out_name=held_name).to_dict()
            print(f"ensemble ({key}):", ens[key]["ensemble_rate"], ens[key]["single_rates"], file=sys.stderr)
    out["ensemble"] = {"runs": ens, "target": 0.95,
                       "note": "members never see the held-out CNN; MLP halves are disjoint 10k slices"}
    out["n_eval"] = int(x.shape[0])
    out["command"] = portable_command(sys.argv)
    path = RESULTS / f"transfer_matrix{args.suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["blackbox", "matrix", "ensemble"])
    p.add_argument("--data-dir", type=Path, default=default_data_dir(),
                   help="folder with mnist/ (default: $ADVLAB_DATA or ../shared/data)")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--rho", type=int, default=7, help="substitute epochs (7 rounds: 150..6400 queries)")
    p.add_argument("--max-queries", type=int, default=6400)
    p.add_argument("--train-epochs", type=int, default=10)
    p.add_argument("--substitute", choices=["mlp", "cnn", "madry", "strided"], default="mlp",
                   help="cnn: small CNN; madry: the oracle's architecture, fresh weights")
    p.add_argument("--craft-loss", choices=["ce", "cw"], default="ce",
                   help="FGSM objective on the substitute: cross-entropy or the logit margin")
    p.add_argument("--extra-substitutes", type=int, default=0,
                   help="also train K more substitutes on the same labelled set and attack their ensemble")
    p.add_argument("--ensemble", type=int, default=1,
                   help="SubstituteAttack(ensemble=K): K-1 substitutes replaying the rounds, no new queries")
    p.add_argument("--craft-noise", type=float, default=0.0,
                   help="> 0: also FGSM on the Gaussian-smoothed substitute (EOT, one step) with this std")
    p.add_argument("--craft-samples", type=int, default=32)
    p.add_argument("--augment", choices=["none", "affine"], default="none",
                   help="substitute training augmentation (SubstituteAttack(augment=...)); no queries")
    p.add_argument("--http", action="store_true", help="query the CNN through advlab's HTTP API")
    p.add_argument("--cnn-only", action="store_true")
    p.add_argument("--adv-checkpoint", default=None, help="an adversarially trained model to attack too")
    p.add_argument("--train-limit", type=int, default=10000)
    p.add_argument("--members-set", choices=["small", "full60k"], default="small",
                   help="ensemble: members on 10k images (first run) or on all 60k with other seeds")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--suffix", default="")
    args = p.parse_args()
    {"blackbox": blackbox, "matrix": matrix, "ensemble": ensemble}[args.what](args)


if __name__ == "__main__":
    main()
