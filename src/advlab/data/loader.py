"""``load_dataset``: one entry point for every dataset advlab knows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ._locate import default_cache_dir
from .cifar10 import load_cifar10
from .dataset import SPLITS, DatasetError, ImageDataset, _check_positive_int
from .digits import load_digits
from .mnist import load_fashion_mnist, load_mnist

__all__ = ["DATASETS", "available_datasets", "default_cache_dir", "load_dataset"]

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "digits")

_Loader = Callable[[str, "str | Path | None", "str | Path | None", bool], ImageDataset]
_LOADERS: dict[str, _Loader] = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "digits": lambda split, data_dir, cache_dir, download: load_digits(split),
}
_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
}


def available_datasets() -> list[str]:
    """Return the names :func:`load_dataset` accepts."""
    return list(DATASETS)


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
    limit: int | None = None,
    classes: Sequence[int] | None = None,
    relabel: bool = False,
    cache_dir: str | Path | None = None,
) -> ImageDataset:
    """Load a dataset by name.

    Files are looked for in ``data_dir`` (the folder holding the files, or a parent with a
    sub-folder named after the dataset, e.g. ``<data_dir>/mnist/``), then in ``cache_dir``
    (and its ``<name>/`` sub-folder). If they are not there and ``download`` is true they are
    downloaded into ``cache_dir/<name>/`` from the usual mirrors, MD5-verified and written
    atomically. ``"digits"`` is bundled with scikit-learn and needs no files.

    This function never reads environment variables; the CLI passes ``ADVLAB_DATA`` as
    ``data_dir``.

    Args:
        name: One of :data:`DATASETS` (case-insensitive).
        split: ``"train"`` or ``"test"``.
        data_dir: Folder to search first.
        download: Whether to download missing files.
        limit: Keep only the first ``limit`` examples (after class filtering).
        classes: Keep only these labels (in original order); see
            :meth:`ImageDataset.subset`.
        relabel: Map ``classes[i]`` to label ``i`` (e.g. 3-vs-7 becomes 0/1).
        cache_dir: Download cache; default ``~/.cache/advlab``.

    Returns:
        The dataset, ``uint8`` images in memory.

    Raises:
        DatasetError: Unknown name or split, files missing (and not downloadable) or
            corrupt. The message says where to put which files.
        ValueError: Invalid ``limit``/``classes``/``relabel``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if limit is not None:
        _check_positive_int(limit, "limit")
    if relabel and classes is None:
        raise ValueError("relabel=True needs classes, e.g. classes=[3, 7]")
    dataset = _LOADERS[key](split, data_dir, cache_dir, download)
    if limit is None and classes is None:
        return dataset
    return dataset.subset(limit=limit, classes=classes, relabel=relabel)
