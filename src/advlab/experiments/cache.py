"""One model cache: a trained model is keyed by a versioned hash of its :class:`Recipe`.

:func:`get_or_train` loads the checkpoint of a finished run, resumes an unfinished one
and trains a missing one; a corrupt entry is logged and retrained. Checkpoints are
written atomically by :func:`advlab.defenses.trainer.fit` (every file goes to a
temporary file and is moved into place), so an interrupted run leaves either the old
file or the new one, never half of one.

Example:
    >>> recipe = Recipe(name="cnn", model="cnn", train={"epochs": 1, "lr": 1e-3})  # doctest: +SKIP
    >>> trained = get_or_train(recipe, train_set, cache_dir="~/.cache/advlab/models")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab._version import __version__
from advlab.checkpoint import META_FILE, STATE_FILE, CheckpointError, load_model, read_metadata
from advlab.data import ImageDataset, normalization_stats
from advlab.defenses.trainer import CurveConfig, TrainConfig, fit
from advlab.models import create_model

__all__ = ["RECIPE_VERSION", "Recipe", "TrainedModel", "cache_key", "get_or_train", "init_model"]

log = logging.getLogger(__name__)

#: bumped whenever the meaning of a recipe field (or how a recipe is trained) changes,
#: so older cache entries are not mistaken for the new ones
RECIPE_VERSION = 1


def cache_key(payload: Any, length: int = 16) -> str:
    """A short sha256 of ``payload``'s JSON (sorted keys) with the recipe and advlab versions.

    Args:
        payload: JSON-ready data (anything else is written with ``str``).
        length: hex digits kept.
    """
    src = json.dumps({"payload": payload, "recipe_version": RECIPE_VERSION, "advlab": __version__},
                     sort_keys=True, default=str)
    return hashlib.sha256(src.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Recipe:
    """How to train one classifier: everything that decides its weights.

    The model's ``in_shape``, ``num_classes`` and input normalisation (``mean``/``std``
    of the training images) come from the training data; the rest is here.

    Attributes:
        name: label of the cache entry (e.g. ``"cnn"``); not part of the key.
        model: registry name of the architecture (:func:`advlab.models.create_model`).
        settings: model settings besides the data-derived ones.
        train: :class:`~advlab.defenses.trainer.TrainConfig` fields except ``seed``
            (with a learning-rate schedule: the scheduled config's fields).
        seed: the training seed (data order, attack noise of the objective).
        init_seed: seeds the initial weights (default: ``seed``).
        objective: zero-argument factory of the training objective (``None``: clean
            training); its ``settings()`` go into the key.
        classes: keep only these classes, relabelled ``0..k-1``.
        offset: skip the first ``offset`` training examples (after ``classes``).
        limit: keep the first ``limit`` training examples (after ``classes`` and ``offset``).
        curves: :class:`~advlab.defenses.trainer.CurveConfig` fields: per-epoch
            clean/FGSM/PGD test error, measured on the ``test`` set given to
            :func:`get_or_train`.
    """

    name: str
    model: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    init_seed: int | None = None
    objective: Callable[[], Any] | None = None
    classes: Sequence[int] | None = None
    offset: int = 0
    limit: int | None = None
    curves: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a recipe needs a non-empty name")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"recipe {self.name!r} needs a model (registry name)")
        if "seed" in self.train:
            raise ValueError(f"recipe {self.name!r}: give the seed as Recipe(seed=...), not in train")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise ValueError(f"recipe {self.name!r}: limit must be a positive integer, got {self.limit!r}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise ValueError(f"recipe {self.name!r}: offset must be an integer >= 0, got {self.offset!r}")
        if self.objective is not None and not callable(self.objective):
            raise TypeError(f"recipe {self.name!r}: objective must be a zero-argument factory")

    def config(self) -> TrainConfig:
        """The training config."""
        return TrainConfig(**dict(self.train, seed=self.seed))

    def curve_config(self) -> CurveConfig | None:
        """The learning-curve config, if the recipe measures curves."""
        return None if self.curves is None else CurveConfig(**self.curves)

    def make_objective(self) -> Any:
        """A fresh training objective (``None`` for clean training)."""
        return self.objective() if self.objective is not None else None

    def describe(self) -> dict[str, Any]:
        """The recipe as JSON-ready data (the objective by its ``settings()``)."""
        obj = self.make_objective()
        return {"model": self.model, "settings": dict(self.settings),
                "train": self.config().key_dict(),
                "init_seed": self.seed if self.init_seed is None else self.init_seed,
                "objective": getattr(obj, "settings", lambda: {})() if obj is not None else None,
                "classes": list(self.classes) if self.classes is not None else None,
                "offset": self.offset, "limit": self.limit,
                "curves": dict(self.curves) if self.curves is not None else None}

    def key(self, data: Any = None) -> str:
        """Versioned hash of the recipe (plus a description of the ``data``, if given)."""
        return cache_key({"recipe": self.describe(), "data": data})


@dataclass
class TrainedModel:
    """A model from :func:`get_or_train`.

    Attributes:
        model: the trained network (eval mode).
        history: per-epoch training log (dicts, as stored in the checkpoint).
        path: the cache entry (a checkpoint directory).
        cached: ``True`` when it was loaded rather than trained now.
    """

    model: nn.Module
    history: list[dict[str, Any]]
    path: Path
    cached: bool


def init_model(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` with torch's global RNG seeded to ``seed``, leaving the caller's RNG untouched.

    Layers draw their initial weights from the global RNG, so this gives the same
    weights as ``torch.manual_seed(seed); build()`` without reseeding anything.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _prepare(recipe: Recipe, train: ImageDataset) -> ImageDataset:
    if recipe.classes is not None:
        train = train.subset(classes=list(recipe.classes), relabel=True)
    if recipe.offset:
        if recipe.offset >= len(train):
            raise ValueError(f"recipe {recipe.name!r}: offset {recipe.offset} leaves none of "
                             f"the {len(train)} training examples")
        train = ImageDataset(images=train.images[recipe.offset:], labels=train.labels[recipe.offset:],
                             classes=train.classes, name=train.name, split=train.split)
    if recipe.limit is not None and len(train) > recipe.limit:
        train = train.subset(limit=recipe.limit)
    return train


def _finished(path: Path, epochs: int) -> dict[str, Any] | None:
    """The metadata of a finished entry at ``path``, else None (a corrupt one is logged)."""
    if not (path / META_FILE).is_file():
        return None
    try:
        meta = read_metadata(path)
    except ValueError as e:
        log.warning("ignoring corrupt cache entry %s (%s); retraining", path, e)
        return None
    return meta if meta.get("epochs_done") == epochs else None


def _load_cached(path: Path, epochs: int) -> tuple[nn.Module, list[Any]] | None:
    """The finished entry at ``path`` (model, history), or ``None`` (missing, unfinished, corrupt)."""
    done = _finished(path, epochs)
    if done is None:
        return None
    try:
        with torch.random.fork_rng(devices=[]):  # building the model draws initial weights
            model = load_model(path).eval()
    except ValueError as e:
        log.warning("ignoring corrupt cache entry %s (%s); retraining", path, e)
        return None
    return model, list(done.get("history", []))


def _train(recipe: Recipe, data: ImageDataset, cfg: TrainConfig, path: Path,
           build: Callable[[], nn.Module], test: ImageDataset | None, run_meta: dict[str, Any],
           say: Callable[[str], None], device: torch.device | None = None) -> tuple[nn.Module, Any]:
    """Train into the entry ``path``: resume an interrupted run, else (or if unreadable) from scratch.

    With ``device``, the model and the data move there for training (once, here) and the
    trained model comes back to the CPU, where cached models live.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    images, labels = data.images.to(dev), data.labels.to(dev)
    kw: dict[str, Any] = {"objective": recipe.make_objective(), "checkpoint_dir": path,
                          "meta": run_meta, "curves": recipe.curve_config()}
    if test is not None:
        kw["test"] = (test.images.to(dev), test.labels.to(dev))
    model = build().to(dev)
    if (path / STATE_FILE).is_file():
        say(f"resuming {recipe.name} ({path})")
        try:
            res = fit(model, images, labels, cfg, resume=True, **kw)
            return model.cpu(), res
        except (CheckpointError, KeyError, RuntimeError) as e:  # unreadable or mismatched state
            log.warning("cannot resume cache entry %s (%s); retraining", path, e)
            model = build().to(dev)
            kw["objective"] = recipe.make_objective()
    where = f" on {dev}" if dev.type != "cpu" else ""
    say(f"training {recipe.name} on {len(data)} {data.name} images ({cfg.epochs} epoch(s)){where}")
    res = fit(model, images, labels, cfg, **kw)
    return model.cpu(), res


def get_or_train(
    recipe: Recipe,
    train: ImageDataset,
    cache_dir: str | Path,
    *,
    test: ImageDataset | None = None,
    meta: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    device: torch.device | str | None = None,
) -> TrainedModel:
    """The model of ``recipe`` trained on ``train``: from the cache, or trained and cached.

    The entry ``<cache_dir>/<dataset>-<name>-<key>`` is a checkpoint directory. A
    finished entry is loaded; an unfinished one (an interrupted run) is resumed with
    ``fit(..., resume=True)``, which gives the same weights as an uninterrupted run;
    an unreadable one is logged and retrained from scratch.

    Args:
        recipe: what to train.
        train: the full training set; the recipe's ``classes``/``limit`` select from it.
        cache_dir: folder of cache entries.
        test: held-out data for the recipe's learning curves (required with ``curves``).
        meta: extra metadata for the checkpoint's ``model.json`` (not part of the key).
        progress: called with one-line status messages.
        device: train there (model and data move once; the returned model is on the CPU).
            Not part of the cache key: a cached model is reused whatever device trained it.

    Returns:
        The :class:`TrainedModel` (its model on the CPU).

    Raises:
        ValueError: the recipe measures curves but no ``test`` set is given.
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    say = progress or (lambda msg: None)
    if recipe.curves is not None and test is None:
        raise ValueError(f"recipe {recipe.name!r} measures learning curves: pass test=...")
    data = _prepare(recipe, train)
    mean, std = normalization_stats(data.images)
    settings = dict(recipe.settings, in_shape=list(data.shape), num_classes=data.num_classes,
                    mean=mean, std=std)
    cfg = recipe.config()
    data_id = {"dataset": data.name, "n": len(data), "mean": mean, "std": std,
               "test": [test.name, len(test)] if test is not None else None}
    path = Path(cache_dir).expanduser() / f"{data.name}-{recipe.name}-{recipe.key(data_id)}"
    cached = _load_cached(path, cfg.epochs)
    if cached is not None:
        say(f"using cached {recipe.name} model ({path})")
        return TrainedModel(cached[0], cached[1], path, cached=True)
    init_seed = recipe.seed if recipe.init_seed is None else recipe.init_seed

    def build() -> nn.Module:
        return init_model(init_seed, lambda: create_model(recipe.model, **settings))

    model, res = _train(recipe, data, cfg, path, build, test, dict(meta or {}), say,
                        None if device is None else torch.device(device))
    try:  # the stored history: the same dicts a later cache hit returns
        history = list(read_metadata(path).get("history", []))
    except ValueError:
        history = [dict(h.__dict__) for h in res.history]
    return TrainedModel(model.eval(), history, path, cached=False)
