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
from advlab.checkpoint import META_FILE, load_model, read_metadata
from advlab.data import ImageDataset
from advlab.defenses.trainer import ScheduledTrainConfig, TrainConfig, fit
from advlab.models import create_model
from advlab.reporting.html import Section

__all__ = ["LectureContext", "SECTIONS", "section", "run_sections", "MODEL_RECIPES", "load_sections"]

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
        """The trained model ``name`` (a key of :data:`MODEL_RECIPES`), trained once and cached.

        A recipe is a dict with ``settings`` (model settings), ``full``/``quick``
        (TrainConfig fields; with ``lr_schedule`` a ScheduledTrainConfig), ``quick_limit``
        (training examples in quick mode) and
        optionally ``model`` (registry name, default: the key), ``classes`` (class
        filter, relabelled), ``objective`` (a zero-argument factory returning a
        training objective, e.g. adversarial training) and ``limit`` (training
        examples in full mode).
        """
        if name in self._models:
            return self._models[name]
        if name not in MODEL_RECIPES:
            raise ValueError(f"no lecture recipe for model {name!r}; known: {sorted(MODEL_RECIPES)}")
        recipe = MODEL_RECIPES[name]
        cfg_kw = recipe["quick" if self.quick else "full"]
        train = self.train
        if recipe.get("classes") is not None:
            train = train.subset(classes=recipe["classes"], relabel=True)
        limit = recipe.get("quick_limit") if self.quick else recipe.get("limit")
        if limit is not None and len(train) > limit:
            train = train.subset(limit=limit)
        x = train.images.float() / 255
        mean = x.mean(dim=(0, 2, 3)).tolist()
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
        settings = dict(recipe.get("settings", {}), in_shape=list(train.shape),
                        num_classes=train.num_classes, mean=mean, std=std)
        cfg_cls = ScheduledTrainConfig if "lr_schedule" in cfg_kw else TrainConfig
        cfg = cfg_cls(seed=self.seed, **cfg_kw)
        objective = recipe["objective"]() if recipe.get("objective") else None
        obj_desc = getattr(objective, "settings", lambda: {})() if objective is not None else {}
        arch = recipe.get("model", name)
        key_src = json.dumps({"model": arch, "settings": settings, "cfg": cfg.__dict__,
                              "objective": obj_desc, "classes": recipe.get("classes"),
                              "data": [train.name, len(train)], "v": __version__},
                             sort_keys=True, default=str)
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
            model = create_model(arch, **settings)
            resume = (ckpt / "train_state.safetensors").is_file()
            fit(model, train.images, train.labels, cfg, objective=objective, checkpoint_dir=ckpt,
                resume=resume, meta={"dataset": train.name, "seed": self.seed})
        model.eval()
        self._models[name] = model
        return model


def load_sections() -> None:
    """Import the section modules (each registers its sections with :func:`section`)."""
    import advlab.reporting.sections  # noqa: F401


def run_sections(ctx: LectureContext, only: list[str] | None = None) -> list[Section]:
    """Compute every registered section (or those in ``only``) in order."""
    load_sections()
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
