"""MNIST and Fashion-MNIST from their canonical IDX files.

Both datasets ship as the same four files::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   (60,000 examples)
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    (10,000 examples)

Uncompressed copies (the same names without ``.gz``) are read too. Files found locally are
validated structurally by :mod:`advlab.data.idx` (not by checksum, so re-compressed copies
work); downloaded files must match the published MD5 of the ``.gz`` files before they are
kept.

References:
    Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. *Gradient-based learning applied to document
    recognition*. Proc. IEEE, 1998.

    H. Xiao, K. Rasul, R. Vollgraf. *Fashion-MNIST: a Novel Image Dataset for Benchmarking
    Machine Learning Algorithms*. arXiv:1708.07747, 2017.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ._locate import default_cache_dir, not_found_message, search_dirs, suggested_dir
from .dataset import SPLITS, DatasetError, ImageDataset
from .download import DownloadError, download_file
from .idx import read_idx_images, read_idx_labels

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MD5",
    "FASHION_MNIST_MIRRORS",
    "MNIST_CLASSES",
    "MNIST_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_mnist",
]

logger = logging.getLogger(__name__)

#: ``split -> (images file, labels file)``; shared by MNIST and Fashion-MNIST.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: Mirrors tried in order (the first is PyTorch's copy; LeCun's page is often unavailable).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
#: Published MD5 of the MNIST ``.gz`` files (as listed by torchvision).
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))

FASHION_MNIST_MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
#: Published MD5 of the Fashion-MNIST ``.gz`` files (as listed by torchvision).
FASHION_MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_DISPLAY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
_SIDE = 28


def load_idx_dataset(
    images_path: str | Path,
    labels_path: str | Path,
    name: str,
    split: str,
    classes: tuple[str, ...],
) -> ImageDataset:
    """Read an MNIST-style pair of IDX files into an :class:`ImageDataset`.

    Args:
        images_path: IDX image file (magic 2051, shape ``(N, 28, 28)``).
        labels_path: IDX label file (magic 2049, shape ``(N,)``).
        name: Dataset name to record.
        split: ``"train"`` or ``"test"``.
        classes: Class names; every label must index into it.

    Returns:
        The dataset with images of shape ``(N, 1, 28, 28)``.

    Raises:
        DatasetError: A file is corrupt, the image size is not 28x28, the counts disagree
            or a label is out of range.
    """
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if images.shape[1:] != (_SIDE, _SIDE):
        raise DatasetError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected "
            f"{_SIDE}x{_SIDE} for {_DISPLAY.get(name, name)}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; the files do not belong together"
        )
    if labels.size and int(labels.max()) >= len(classes):
        raise DatasetError(
            f"{labels_path}: label {int(labels.max())} out of range for {len(classes)} classes"
        )
    return ImageDataset(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels).to(torch.int64),
        classes=classes,
        name=name,
        split=split,
    )


def _find_in(directory: Path, filenames: tuple[str, ...]) -> list[Path] | None:
    """Return the paths of all ``filenames`` in ``directory`` (``.gz`` or not), or ``None``."""
    paths: list[Path] = []
    for filename in filenames:
        for candidate in (directory / filename, directory / filename.removesuffix(".gz")):
            if candidate.is_file():
                paths.append(candidate)
                break
        else:
            return None
    return paths


def _load(
    name: str,
    split: str,
    data_dir: str | Path | None,
    cache_dir: str | Path | None,
    download: bool,
) -> ImageDataset:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for {_DISPLAY[name]}; use one of {SPLITS}")
    fashion = name == "fashion-mnist"
    classes = FASHION_MNIST_CLASSES if fashion else MNIST_CLASSES
    data = Path(data_dir).expanduser() if data_dir is not None else None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    filenames = MNIST_FILES[split]
    searched = search_dirs(name, data, cache)
    for directory in searched:
        paths = _find_in(directory, filenames)
        if paths is not None:
            logger.debug("loading %s %s from %s", name, split, directory)
            return load_idx_dataset(paths[0], paths[1], name, split, classes)

    put_into = suggested_dir(name, data, cache)
    if not download:
        raise DatasetError(
            not_found_message(_DISPLAY[name], split, filenames, searched, put_into, None)
        )
    target = cache / name
    mirrors = FASHION_MNIST_MIRRORS if fashion else MNIST_MIRRORS
    md5s = FASHION_MNIST_MD5 if fashion else MNIST_MD5
    try:
        paths = [download_file(f, mirrors, md5s[f], target) for f in filenames]
    except DownloadError as exc:
        raise DatasetError(
            not_found_message(_DISPLAY[name], split, filenames, searched, put_into, str(exc))
        ) from exc
    return load_idx_dataset(paths[0], paths[1], name, split, classes)


def load_mnist(
    split: str = "train",
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load MNIST (60,000 train / 10,000 test handwritten digits, 1x28x28).

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: Folder holding the IDX files, or a parent with a ``mnist/`` sub-folder.
        cache_dir: Download cache (default ``~/.cache/advlab``); also searched.
        download: Download missing files into ``cache_dir/mnist/`` (MD5-verified).

    Returns:
        The dataset; class names are ``"0"`` .. ``"9"``.

    Raises:
        DatasetError: The files are missing and could not be downloaded, or are corrupt.
    """
    return _load("mnist", split, data_dir, cache_dir, download)


def load_fashion_mnist(
    split: str = "train",
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load Fashion-MNIST (60,000 train / 10,000 test Zalando article images, 1x28x28).

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: Folder holding the IDX files, or a parent with a ``fashion-mnist/``
            sub-folder. A folder named ``mnist`` is never read as Fashion-MNIST.
        cache_dir: Download cache (default ``~/.cache/advlab``); also searched.
        download: Download missing files into ``cache_dir/fashion-mnist/`` (MD5-verified).

    Returns:
        The dataset; class names are ``"T-shirt/top"``, ``"Trouser"``, ... ``"Ankle boot"``.

    Raises:
        DatasetError: The files are missing and could not be downloaded, or are corrupt.
    """
    return _load("fashion-mnist", split, data_dir, cache_dir, download)
