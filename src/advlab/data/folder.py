"""Your own images: a folder with one subfolder per class (the ``ImageFolder`` layout).

::

    photos/                     photos/
      cat/  001.jpg 002.png       train/  cat/ ...  dog/ ...
      dog/  003.jpg ...           test/   cat/ ...  dog/ ...    (or val/ instead of test/)

Class order is the sorted subfolder names, or, with a classes file (one name per line), the
order of its lines: line ``i`` is label ``i``, so the labels match a model trained on those
classes, and the folder may hold only some of them (a subfolder not in the file is an error).

Splits: a folder with ``train/`` and ``test/`` (or ``val/``) subfolders gives those as the
``"train"`` and ``"test"`` splits; any other folder has no split, and the whole folder is
used for either split (``eval`` and ``attack`` read ``"test"``, so point them at the folder
you want evaluated).

Order: examples are interleaved across classes (the first image of every class, then the
second, ...; files sorted by name within a class), so ``limit=N`` takes a class-balanced,
deterministic slice instead of the first class only. Only the selected files are decoded.

Images are read with Pillow as RGB (or one channel when every selected image is grey).
Without ``image_size`` they must all have the same size; with it each is resized (shorter
side to ``resize``, default ``int(image_size / 0.875)``, bicubic) and centre-cropped to
``image_size x image_size``, the usual ImageNet evaluation transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .dataset import DatasetError, ImageDataset
from .images import IMAGE_EXTENSIONS, check_image_size, is_gray, read_class_names, read_image, stack_images

__all__ = ["load_image_folder"]

_TEST_NAMES = ("test", "val")


def _visible_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_root(root: Path, split: str) -> Path:
    """``root/train`` or ``root/test`` (``root/val``) for a split layout, else ``root``."""
    subdirs = set(_visible_dirs(root))
    if "train" not in subdirs or not subdirs & set(_TEST_NAMES):
        return root
    if split == "train":
        return root / "train"
    return root / ("test" if "test" in subdirs else "val")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_files(base: Path, classes_file: str | Path | None) -> tuple[tuple[str, ...], list[list[Path]]]:
    """Class names and, per label, that class's image files (empty for a class with no folder)."""
    class_dirs = _visible_dirs(base)
    if not class_dirs:
        hint = " (it holds images but no class subfolders)" if _image_files(base) else ""
        raise DatasetError(f"image folder {base} has no class subfolders{hint}; put each class's images "
                           f"in {base}/<class name>/")
    if classes_file is not None:
        names = read_class_names(classes_file)
        index = {name: i for i, name in enumerate(names)}
        for d in class_dirs:
            if d not in index:
                raise DatasetError(f"class folder {base / d} is not listed in classes file {classes_file}; "
                                   "add it (one class name per line) or remove the folder")
    else:
        names = tuple(class_dirs)
        index = {name: i for i, name in enumerate(names)}
    per_label: list[list[Path]] = [[] for _ in names]
    for d in class_dirs:
        files = _image_files(base / d)
        if not files:
            raise DatasetError(f"class folder {base / d} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                               "add some or remove the folder")
        per_label[index[d]] = files
    return names, per_label


def _interleave(per_label: list[list[Path]], classes: Sequence[int] | None,
                limit: int | None) -> list[tuple[Path, int]]:
    wanted = None if classes is None else {int(c) for c in classes}
    chosen: list[tuple[Path, int]] = []
    longest = max((len(f) for f in per_label), default=0)
    for k in range(longest):
        for label, files in enumerate(per_label):
            if k < len(files) and (wanted is None or label in wanted):
                chosen.append((files[k], label))
                if limit is not None and len(chosen) >= limit:
                    return chosen
    return chosen


def load_image_folder(
    root: str | Path,
    split: str = "test",
    image_size: int | None = None,
    resize: int | None = None,
    classes_file: str | Path | None = None,
    limit: int | None = None,
    classes: Sequence[int] | None = None,
) -> ImageDataset:
    """Load an image folder (see the module docstring for the layout, order and transform).

    Args:
        root: The folder.
        split: ``"train"`` or ``"test"``; only matters for a folder with split subfolders.
        image_size: Resize and centre-crop every image to this size (needed when sizes differ).
        resize: Shorter side before the crop; default ``int(image_size / 0.875)``.
        classes_file: Text file with one class name (= subfolder name) per line, in label order.
        limit: Decode only the first ``limit`` examples (in the interleaved order).
        classes: Decode only examples with these labels (:meth:`ImageDataset.subset` checks them).

    Returns:
        A ``uint8`` :class:`ImageDataset` named ``folder:<root>``.

    Raises:
        DatasetError: Missing or empty folder, a class folder without images, an unreadable
            image (named), images of different sizes without ``image_size``, a bad classes file.
        ValueError: Invalid ``image_size``/``resize``.
    """
    image_size, resize = check_image_size(image_size, resize)
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"image folder {root} not found")
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; folder: needs a directory with one subfolder per class")
    base = _split_root(root, split)
    names, per_label = _class_files(base, classes_file)
    chosen = _interleave(per_label, classes, limit)
    paths = [p for p, _ in chosen]
    gray = bool(paths) and all(is_gray(p) for p in paths)
    arrays = [read_image(p, gray, image_size, resize) for p in paths]
    images = torch.from_numpy(stack_images(arrays, paths))
    labels = torch.tensor([label for _, label in chosen], dtype=torch.int64)
    return ImageDataset(images=images, labels=labels, classes=names, name=f"folder:{root}", split=split)
