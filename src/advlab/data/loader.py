"""``load_dataset``: one entry point for every dataset advlab knows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ._locate import default_cache_dir
from .cifar10 import load_cifar10
from .dataset import SPLITS, DatasetError, ImageDataset, _check_positive_int
from .digits import load_digits
from .folder import load_image_folder
from .imagenet_samples import load_imagenet_samples
from .mnist import load_fashion_mnist, load_mnist
from .npz import load_npz

__all__ = ["DATASETS", "PATH_FORMS", "available_datasets", "default_cache_dir", "load_dataset"]

#: Names accepted by :func:`load_dataset` (besides the ``folder:PATH`` and ``npz:PATH`` forms).
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "digits", "imagenet-samples")
#: Prefixes of the path forms: ``folder:PATH`` (:mod:`.folder`), ``npz:PATH`` (:mod:`.npz`).
PATH_FORMS: tuple[str, ...] = ("folder:PATH", "npz:PATH")

_Loader = Callable[[str, "str | Path | None", "str | Path | None", bool], ImageDataset]
_LOADERS: dict[str, _Loader] = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "digits": lambda split, data_dir, cache_dir, download: load_digits(split),
    "imagenet-samples": lambda split, data_dir, cache_dir, download: load_imagenet_samples(split),
}
_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "imagenet_samples": "imagenet-samples",
}
_IMAGE_OPTIONS = "image_size/resize/classes_file (CLI: --image-size/--resize/--classes-file)"


def available_datasets() -> list[str]:
    """Return the names :func:`load_dataset` accepts (the path forms are in :data:`PATH_FORMS`)."""
    return list(DATASETS)


def _load_path_form(kind: str, target: str, split: str, limit: int | None,
                    classes: Sequence[int] | None, image_size: int | None, resize: int | None,
                    classes_file: str | Path | None) -> ImageDataset:
    if not target.strip():
        example = "images" if kind == "folder" else "data.npz"
        raise DatasetError(f"{kind}: needs a path, e.g. {kind}:path/to/{example}")
    if kind == "folder":
        return load_image_folder(target, split, image_size=image_size, resize=resize,
                                 classes_file=classes_file, limit=limit, classes=classes)
    if image_size is not None or resize is not None:
        raise DatasetError("npz: images are used as stored; image_size/resize (--image-size/--resize) "
                           "apply to folder: and imagenet-samples")
    return load_npz(target, split, classes_file=classes_file)


def _load_named(key: str, split: str, data_dir: str | Path | None, cache_dir: str | Path | None,
                download: bool, image_size: int | None, resize: int | None,
                classes_file: str | Path | None) -> ImageDataset:
    if key == "imagenet-samples":
        if resize is not None or classes_file is not None:
            raise DatasetError("imagenet-samples takes image_size (--image-size) only: its photos are "
                               "resized whole, as foolbox does, and carry the 1000 ImageNet class names")
        return load_imagenet_samples(split, 224 if image_size is None else image_size)
    if image_size is not None or resize is not None or classes_file is not None:
        raise DatasetError(f"{_IMAGE_OPTIONS} apply to folder:PATH, npz:PATH (classes file only) and "
                           f"imagenet-samples, not to {key}")
    return _LOADERS[key](split, data_dir, cache_dir, download)


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
    limit: int | None = None,
    classes: Sequence[int] | None = None,
    relabel: bool = False,
    cache_dir: str | Path | None = None,
    image_size: int | None = None,
    resize: int | None = None,
    classes_file: str | Path | None = None,
) -> ImageDataset:
    """Load a dataset by name, or your own data by path.

    Names: files are looked for in ``data_dir`` (the folder holding the files, or a parent
    with a sub-folder named after the dataset, e.g. ``<data_dir>/mnist/``), then in
    ``cache_dir`` (and its ``<name>/`` sub-folder). If they are not there and ``download`` is
    true they are downloaded into ``cache_dir/<name>/`` from the usual mirrors, MD5-verified
    and written atomically. ``"digits"`` is bundled with scikit-learn and needs no files;
    ``"imagenet-samples"`` is 20 ImageNet photos from the ``foolbox`` wheel
    (:mod:`advlab.data.imagenet_samples`; ``pip install 'advlab[imagenet]'``).

    Paths (``data_dir``, ``cache_dir`` and ``download`` do not apply):

    * ``folder:PATH``: an image folder, one subfolder per class (:mod:`advlab.data.folder`);
      with ``train/`` and ``test/`` (or ``val/``) subfolders those are the splits, otherwise
      the whole folder is used for either split.
    * ``npz:PATH``: arrays ``x`` and ``y`` in an ``.npz`` file (:mod:`advlab.data.npz`).

    This function never reads environment variables; the CLI passes ``ADVLAB_DATA`` as
    ``data_dir``.

    Args:
        name: One of :data:`DATASETS` (case-insensitive), ``folder:PATH`` or ``npz:PATH``.
        split: ``"train"`` or ``"test"``.
        data_dir: Folder to search first.
        download: Whether to download missing files.
        limit: Keep only the first ``limit`` examples (after class filtering).
        classes: Keep only these labels (in original order); see
            :meth:`ImageDataset.subset`.
        relabel: Map ``classes[i]`` to label ``i`` (e.g. 3-vs-7 becomes 0/1).
        cache_dir: Download cache; default ``~/.cache/advlab``.
        image_size: ``folder:``: resize and centre-crop to this size; ``imagenet-samples``:
            resize to this size (default 224).
        resize: ``folder:``: the shorter side before the crop (default ``int(image_size / 0.875)``).
        classes_file: ``folder:``/``npz:``: class names, one per line, in label order.

    Returns:
        The dataset, ``uint8`` images in memory.

    Raises:
        DatasetError: Unknown name or split, files missing (and not downloadable) or
            corrupt, an option that does not apply to this dataset. The message says what to do.
        ValueError: Invalid ``limit``/``classes``/``relabel``/``image_size``/``resize``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if limit is not None:
        _check_positive_int(limit, "limit")
    if relabel and classes is None:
        raise ValueError("relabel=True needs classes, e.g. classes=[3, 7]")
    kind, sep, target = name.strip().partition(":")
    if sep and kind.lower() in ("folder", "npz"):
        dataset = _load_path_form(kind.lower(), target, split, limit, classes, image_size, resize,
                                  classes_file)
    else:
        key = name.strip().lower()
        key = _ALIASES.get(key, key)
        if key not in _LOADERS:
            raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}, "
                               f"or your own data as {' or '.join(PATH_FORMS)}")
        dataset = _load_named(key, split, data_dir, cache_dir, download, image_size, resize, classes_file)
    if limit is None and classes is None:
        return dataset
    return dataset.subset(limit=limit, classes=classes, relabel=relabel)
