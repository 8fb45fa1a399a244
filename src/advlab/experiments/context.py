"""What every lecture experiment shares: the data, the cached models, the budget, the seed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from advlab.data import ImageDataset
from advlab.experiments.cache import Recipe, TrainedModel, get_or_train
from advlab.experiments.photos import PhotoSet, PhotosUnavailable, load_photo_set
from advlab.experiments.recipes import MODEL_RECIPES, lecture_recipe

__all__ = ["ExperimentContext"]


@dataclass
class ExperimentContext:
    """Data, trained models (cached on disk) and budgets shared by the lecture's experiments.

    Nothing here touches torch's global RNG: every random draw of an experiment comes
    from :meth:`generator`, and models are built with their own seed
    (:func:`~advlab.experiments.cache.init_model`).

    Attributes:
        train: training set.
        test: test set.
        quick: the 2-minute variant (smaller training and evaluation sets).
        cache_dir: where trained models are stored and reused.
        seed: seeds the models' training and every generator handed to attacks.
        progress: status callback (the CLI prints it).
        device: where the lecture's models are trained (``advlab lecture --device``); the
            trained models come back to the CPU, where the sections attack them.
    """

    train: ImageDataset
    test: ImageDataset
    quick: bool
    cache_dir: Path
    seed: int = 0
    progress: Callable[[str], None] = lambda msg: None
    device: torch.device | None = None
    _models: dict[str, nn.Module] = field(default_factory=dict)
    _photos: PhotoSet | PhotosUnavailable | None = None

    @property
    def n_eval(self) -> int:
        """How many test examples the attack sections use."""
        return min(len(self.test), 500 if self.quick else 2000)

    @property
    def n_curve(self) -> int:
        """How many test examples the accuracy-vs-eps curves use."""
        return min(len(self.test), 200 if self.quick else 500)

    def eval_data(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` (default :attr:`n_eval`) test examples as float tensors."""
        return self.test.subset(limit=n or self.n_eval).tensors()

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded with :attr:`seed`."""
        return torch.Generator().manual_seed(self.seed)

    def train_recipe(self, recipe: Recipe, test: ImageDataset | None = None,
                     meta: dict[str, object] | None = None) -> TrainedModel:
        """``recipe`` trained on :attr:`train` through the model cache."""
        return get_or_train(recipe, self.train, self.cache_dir, test=test,
                            meta={"dataset": self.train.name, "seed": self.seed, **(meta or {})},
                            progress=self.progress, device=self.device)

    def use_model(self, name: str, model: nn.Module) -> None:
        """Use ``model`` (in eval mode) wherever an experiment asks for ``name``."""
        self._models[name] = model.eval()

    def model(self, name: str) -> nn.Module:
        """The trained model ``name`` (a key of :data:`MODEL_RECIPES`), trained once and cached."""
        if name in self._models:
            return self._models[name]
        if name not in MODEL_RECIPES:
            raise ValueError(f"no lecture recipe for model {name!r}; known: {sorted(MODEL_RECIPES)}")
        model = self.train_recipe(lecture_recipe(name, self.quick, self.seed)).model
        self._models[name] = model
        return model

    def use_photos(self, photos: PhotoSet) -> None:
        """Use ``photos`` (model and images) wherever an experiment asks for :meth:`photos`."""
        self._photos = photos

    def photos(self) -> PhotoSet:
        """The ImageNet model and photos of the photo sections, loaded once.

        Raises:
            PhotosUnavailable: the ``imagenet`` extra is missing (a one-line note says how to
                install it); the same note on every later call, without retrying.
        """
        if self._photos is None:
            try:
                self._photos = load_photo_set()
            except PhotosUnavailable as e:
                self._photos = e
        if isinstance(self._photos, PhotosUnavailable):
            raise PhotosUnavailable(str(self._photos))
        return self._photos
