"""Datasets as in-memory ``uint8`` tensors: MNIST, Fashion-MNIST, CIFAR-10, sklearn digits, the
foolbox ImageNet samples, and your own data as ``folder:PATH`` (an image folder) or ``npz:PATH``.

Example:
    >>> from advlab.data import load_dataset
    >>> test = load_dataset("mnist", "test", data_dir="../shared/data")  # doctest: +SKIP
    >>> x, y = test.subset(limit=256).tensors()  # float32 in [0, 1], int64  # doctest: +SKIP

Nothing here reads environment variables, prints, or touches global RNGs; downloads go to
``cache_dir`` (default ``~/.cache/advlab``) and are MD5-verified.
"""

from __future__ import annotations

from .cifar10 import load_cifar10
from .dataset import SPLITS, DatasetError, ImageDataset
from .digits import load_digits
from .download import DownloadError, download_file
from .folder import load_image_folder
from .imagenet_samples import imagenet_classes, load_imagenet_samples
from .loader import DATASETS, PATH_FORMS, available_datasets, default_cache_dir, load_dataset
from .mnist import load_fashion_mnist, load_mnist
from .npz import load_npz
from .stats import normalization_stats
from .synthetic import make_linear_blobs

__all__ = [
    "DATASETS",
    "PATH_FORMS",
    "SPLITS",
    "DatasetError",
    "DownloadError",
    "ImageDataset",
    "available_datasets",
    "default_cache_dir",
    "download_file",
    "imagenet_classes",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_imagenet_samples",
    "load_mnist",
    "load_npz",
    "make_linear_blobs",
    "normalization_stats",
]
