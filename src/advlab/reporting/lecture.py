"""The ``advlab lecture`` report: one function per section, one template per section.

A section is registered with :func:`section`; it receives the shared
:class:`LectureContext` (data, cached trained models, budget) and returns a
:class:`~advlab.reporting.html.Section`. Its template is
``templates/sections/<key>.html.j2``. Later capabilities add a function and a
template, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab import __version__
from advlab.attacks import FGSM, PGD
from advlab.checkpoint import META_FILE, load_model, read_metadata
from advlab.data import ImageDataset
from advlab.defenses.trainer import TrainConfig, fit
from advlab.evaluation import accuracy_vs_eps, evaluate, predict
from advlab.models import confidence, create_model
from advlab.reporting import figures
from advlab.reporting.html import Section
from advlab.threat import ThreatModel

__all__ = ["LectureContext", "SECTIONS", "section", "run_sections", "MODEL_RECIPES"]

log = logging.getLogger(__name__)

SectionFn = Callable[["LectureContext"], Section]
#: registered sections in report order: (key, title, function)
SECTIONS: list[tuple[str, str, SectionFn]] = []


def section(key: str, title: str) -> Callable[[SectionFn], SectionFn]:
    """Register a report section (decorator)."""

    def deco(fn: SectionFn) -> SectionFn:
        SECTIONS.append((key, title, fn))
        return fn

    return deco


#: how the lecture trains each model: (model settings, train config) for full / quick runs
MODEL_RECIPES: dict[str, dict[str, Any]] = {
    "softmax": {"settings": {}, "full": {"epochs": 3, "lr": 3e-3}, "quick": {"epochs": 1, "lr": 3e-3},
                "quick_limit": 10000},
    "cnn": {"settings": {}, "full": {"epochs": 2, "lr": 1e-3}, "quick": {"epochs": 1, "lr": 1e-3},
            "quick_limit": 10000},
}


@dataclass
class LectureContext:
    """What every section shares: data, trained models (cached on disk), budgets.

    Attributes:
        train, test: datasets.
        quick: the 2-minute variant (smaller training and evaluation sets).
        cache_dir: where trained models are stored and reused.
        seed: seeds every generator handed to attacks.
        progress: status callback (the CLI prints it).
    """

    train: ImageDataset
    test: ImageDataset
    quick: bool
    cache_dir: Path
    seed: int = 0
    progress: Callable[[str], None] = lambda msg: None
    _models: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def n_eval(self) -> int:
        """How many test examples the attack sections use."""
        return min(len(self.test), 500 if self.quick else 2000)

    @property
    def n_curve(self) -> int:
        return min(len(self.test), 200 if self.quick else 500)

    def eval_data(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.test.subset(limit=n or self.n_eval).tensors()

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def model(self, name: str) -> nn.Module:
        """The trained model ``name`` (from :data:`MODEL_RECIPES`), trained once and cached."""
        if name in self._models:
            return self._models[name]
        recipe = MODEL_RECIPES[name]
        cfg_kw = recipe["quick" if self.quick else "full"]
        train = self.train
        if self.quick and len(train) > recipe["quick_limit"]:
            train = train.subset(limit=recipe["quick_limit"])
        x = train.images.float() / 255
        mean = x.mean(dim=(0, 2, 3)).tolist()
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
        settings = dict(recipe["settings"], in_shape=list(train.shape),
                        num_classes=train.num_classes, mean=mean, std=std)
        cfg = TrainConfig(seed=self.seed, **cfg_kw)
        key_src = json.dumps({"model": name, "settings": settings, "cfg": cfg.__dict__,
                              "data": [train.name, len(train)], "v": __version__},
                             sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
        ckpt = self.cache_dir / f"{train.name}-{name}-{key}"
        model: nn.Module | None = None
        if (ckpt / META_FILE).is_file():
            try:
                if read_metadata(ckpt).get("epochs_done") == cfg.epochs:
                    model = load_model(ckpt)
                    self.progress(f"using cached {name} model ({ckpt})")
            except ValueError as e:  # corrupt cache entry: retrain
                log.warning("ignoring cached model at %s: %s", ckpt, e)
        if model is None:
            self.progress(f"training {name} on {len(train)} {train.name} images "
                          f"({cfg.epochs} epoch(s))")
            torch.manual_seed(self.seed)
            model = create_model(name, **settings)
            resume = (ckpt / "train_state.safetensors").is_file()
            fit(model, train.images, train.labels, cfg, checkpoint_dir=ckpt, resume=resume,
                meta={"dataset": train.name, "seed": self.seed})
        model.eval()
        self._models[name] = model
        return model


def run_sections(ctx: LectureContext, only: list[str] | None = None) -> list[Section]:
    """Compute every registered section (or those in ``only``) in order."""
    out = []
    keys = [k for k, _, _ in SECTIONS]
    for k in only or []:
        if k not in keys:
            raise ValueError(f"unknown section {k!r}; sections are {keys}")
    for key, title, fn in SECTIONS:
        if only and key not in only:
            continue
        ctx.progress(f"section: {title}")
        t0 = time.perf_counter()
        s = fn(ctx)
        s.key, s.title, s.seconds = key, title, time.perf_counter() - t0
        out.append(s)
    return out


# --------------------------------------------------------------------------- sections


@section("panda", "The panda-to-gibbon example, on digits")
def panda_section(ctx: LectureContext) -> Section:
    model = ctx.model("cnn")
    x, y = ctx.eval_data(200)
    classes = ctx.test.classes
    logits = predict(model, x)
    conf = confidence(model, logits)
    ok = (logits.argmax(1) == y) & (conf > 0.9)
    candidates = ok.nonzero().squeeze(1)
    chosen = None
    for eps in (0.1, 0.15, 0.2, 0.25, 0.3):
        if candidates.numel() == 0:
            break
        r = FGSM()(model, x[candidates], y[candidates], threat=ThreatModel("linf", eps))
        hit = r.success.nonzero().squeeze(1)
        if hit.numel():
            i = int(hit[0])
            chosen = (int(candidates[i]), eps, r.x_adv[i], r.logits[i])
            break
    if chosen is None:
        return Section("panda", "", data={"found": False})
    j, eps, xa, alog = chosen
    adv_conf = float(confidence(model, alog[None])[0])
    adv_pred = int(alog.argmax())
    data = {"found": True, "index": j, "eps": eps, "label": classes[int(y[j])],
            "clean_pred": classes[int(logits[j].argmax())], "clean_conf": float(conf[j]),
            "adv_pred": classes[adv_pred], "adv_conf": adv_conf}
    fig = figures.adversarial_triplet(x[j], xa, data["clean_pred"], data["clean_conf"],
                                      data["adv_pred"], adv_conf, eps)
    return Section("panda", "", data=data, figures={"triplet": figures.figure_to_data_uri(fig)})


@section("fgsm", "FGSM at eps = 0.25 against a shallow softmax model and a CNN")
def fgsm_section(ctx: LectureContext) -> Section:
    x, y = ctx.eval_data()
    rows = []
    threat = ThreatModel("linf", 0.25)
    for name, label in (("softmax", "softmax regression"), ("cnn", "CNN (Madry et al. architecture)")):
        model = ctx.model(name)
        r = evaluate(model, x, y, FGSM(), threat, batch_size=500)
        rows.append({"model": label, **r.to_dict()})
    published = [
        {"model": "shallow softmax, MNIST (Goodfellow et al. 2014)", "adv_error_rate": 0.999,
         "mean_confidence_adv_mistakes": 0.793},
        {"model": "maxout network, MNIST (Goodfellow et al. 2014)", "adv_error_rate": 0.894,
         "mean_confidence_adv_mistakes": 0.976},
    ]
    return Section("fgsm", "", data={"rows": rows, "published": published, "eps": 0.25,
                                     "n": int(x.shape[0])})


@section("curves", "Accuracy vs eps: FGSM and PGD")
def curves_section(ctx: LectureContext) -> Section:
    x, y = ctx.eval_data(ctx.n_curve)
    eps = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
    steps = 10 if ctx.quick else 20
    curves, labels = [], []
    for name in ("softmax", "cnn"):
        model = ctx.model(name)
        curves.append(accuracy_vs_eps(model, x, y, FGSM(), eps, name="FGSM"))
        labels.append(f"{name}: FGSM")
        pgd = PGD(steps=steps, rel_step_size=2.5 / steps, random_init=True, early_stop=True)
        curves.append(accuracy_vs_eps(model, x, y, pgd, eps, generator=ctx.generator(),
                                      name=f"PGD-{steps}"))
        labels.append(f"{name}: PGD-{steps}")
    fig = figures.accuracy_curves(curves, labels, title=f"Linf robustness ({x.shape[0]} test images)")
    table = [{"label": lab, **c.to_dict()} for lab, c in zip(labels, curves, strict=True)]
    return Section("curves", "", data={"curves": table, "eps": eps, "n": int(x.shape[0]),
                                       "steps": steps},
                   figures={"curves": figures.figure_to_data_uri(fig)})
