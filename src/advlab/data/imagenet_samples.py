"""``imagenet-samples``: 20 ImageNet validation photos with their labels, and the 1000 class names.

The photos are package data of the ``foolbox`` wheel (``foolbox/data/imagenet_<i>_<label>.jpg``,
label in the file name), installed by ``pip install 'advlab[imagenet]'`` (or
``pip install --no-deps foolbox``). They are read as files: foolbox itself is never imported
(that would pull in eagerpy and more). Each file's MD5 is checked against the 3.3.4 wheel.

As in ``foolbox.utils.samples``, every photo is resized as a whole (bicubic) to
``image_size x image_size`` (default 224), so results compare with foolbox's. There is no
split: both splits are these 20 images.

The class names (:func:`imagenet_classes`) are the usual 1000 ILSVRC-2012 names in label
order, shipped with advlab as ``imagenet_classes.txt``.

References:
    O. Russakovsky et al. *ImageNet Large Scale Visual Recognition Challenge*. IJCV 2015.
    J. Rauber, W. Brendel, M. Bethge. *Foolbox: A Python toolbox to benchmark the robustness
    of machine learning models*. ICML 2017 Reliable ML workshop.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .dataset import DatasetError, ImageDataset
from .images import read_image

__all__ = ["IMAGENET_SAMPLE_MD5", "imagenet_classes", "imagenet_samples_dir", "load_imagenet_samples"]

#: The 20 photos of the foolbox 3.3.4 wheel and their MD5s (label = last number in the name).
IMAGENET_SAMPLE_MD5: dict[str, str] = {
    "imagenet_00_243.jpg": "49f3e9a234d30bd343f471a2951aadbd",
    "imagenet_01_559.jpg": "a222062719d7673d727746b7bd236ac6",
    "imagenet_02_438.jpg": "89df831b4895db47adc4d45e0dcee3d9",
    "imagenet_03_990.jpg": "96f36c1167edffea9e7e6f522f888558",
    "imagenet_04_949.jpg": "a2b7a0f2916afbd60d1ae7f762ffc6e0",
    "imagenet_05_853.jpg": "2d211288c5525bea006ed790656cc8a2",
    "imagenet_06_609.jpg": "51dbbc21e753eb5db75667b414203fdb",
    "imagenet_07_609.jpg": "1c7c7b6e5b16b47eb37ba7fa40f4a6c3",
    "imagenet_08_915.jpg": "77c083395614303f8ce747c2adbdc1f3",
    "imagenet_09_455.jpg": "d669ecafa9d79d1c0e0cbd3aa4195939",
    "imagenet_10_541.jpg": "4b71ef95964a3ca037cbdc0b1b62770f",
    "imagenet_11_630.jpg": "4f9ea3fdda8f653e30965d4317c25943",
    "imagenet_12_741.jpg": "9413cae2030e46d6d576fc1bf9d7a249",
    "imagenet_13_471.jpg": "3491a2ce7dfe51385b8cece835d17f65",
    "imagenet_14_129.jpg": "5662f1302d46404d6ad293db1c88349e",
    "imagenet_15_99.jpg": "6c29ae4bbef53956e86c64fc5b4c0a83",
    "imagenet_16_251.jpg": "47a211ff97f50e86de46b9e180062fde",
    "imagenet_17_22.jpg": "906bd567d8c8fb81d4b3271fcc28b9e4",
    "imagenet_18_317.jpg": "4679d4b6a013f54f7b7c8967fc4bbea2",
    "imagenet_19_305.jpg": "9b06c5cbc7addd99d630be75eb3ed370",
}
_INSTALL = "pip install 'advlab[imagenet]' (or: pip install --no-deps foolbox)"


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet (ILSVRC-2012) class names; ``imagenet_classes()[label]`` names a label."""
    text = importlib.resources.files("advlab.data").joinpath("imagenet_classes.txt").read_text("utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:  # a damaged installation, not bad user input
        raise DatasetError(f"advlab's imagenet_classes.txt has {len(names)} names, expected 1000; "
                           "reinstall advlab")
    return names


def imagenet_samples_dir() -> Path:
    """The folder of foolbox's sample images, found without importing foolbox.

    Raises:
        DatasetError: foolbox is not installed.
    """
    spec = importlib.util.find_spec("foolbox")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "data"
        if folder.is_dir():
            return folder
    raise DatasetError(f"imagenet-samples needs the foolbox wheel's sample images: {_INSTALL}")


def load_imagenet_samples(split: str = "test", image_size: int = 224) -> ImageDataset:
    """The 20 foolbox ImageNet photos, resized to ``image_size`` (see the module docstring).

    Raises:
        DatasetError: foolbox is not installed, or a photo is missing or differs (MD5).
        ValueError: ``image_size`` is not a positive integer.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer number of pixels, got {image_size!r}")
    folder = imagenet_samples_dir()
    arrays, labels = [], []
    for name, md5 in IMAGENET_SAMPLE_MD5.items():
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"{path} is missing from the foolbox installation; reinstall it: {_INSTALL}")
        if hashlib.md5(path.read_bytes()).hexdigest() != md5:
            raise DatasetError(f"{path} differs from the foolbox 3.3.4 sample (MD5 mismatch); reinstall "
                               f"foolbox 3.3.4: {_INSTALL}")
        arrays.append(read_image(path, gray=False, image_size=image_size, square=True))
        labels.append(int(Path(name).stem.rsplit("_", 1)[1]))
    images = torch.from_numpy(np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2)))
    return ImageDataset(images=images, labels=torch.tensor(labels, dtype=torch.int64),
                        classes=imagenet_classes(), name="imagenet-samples", split=split)
