"""Reading image files with Pillow into ``uint8`` arrays, and the usual evaluation transform.

Shared by the image-folder loader (``folder:PATH``) and the bundled ImageNet samples
(``imagenet-samples``). Every failure is a :class:`DatasetError` that names the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .dataset import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "check_image_size", "eval_transform", "is_gray", "read_class_names",
           "read_image", "stack_images"]

#: File name endings read as images (lower case); other files in a class folder are ignored.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                                     ".ppm", ".pgm", ".pbm")

#: ``resize = int(image_size / CROP_FRACTION)``: the usual ImageNet evaluation transform
#: (resize the shorter side to 256, centre-crop 224).
CROP_FRACTION = 0.875

_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def check_image_size(image_size: int | None, resize: int | None) -> tuple[int | None, int | None]:
    """Validate the ``image_size``/``resize`` pair; return ``(image_size, resize)`` filled in.

    ``resize`` defaults to ``int(image_size / 0.875)`` and needs ``image_size`` (the crop).
    """
    for value, what in ((image_size, "image_size"), (resize, "resize")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError(f"{what} must be a positive integer number of pixels, got {value!r}")
    if image_size is None:
        if resize is not None:
            raise ValueError("resize needs image_size: images are resized (shorter side) to resize, "
                             "then centre-cropped to image_size x image_size")
        return None, None
    if resize is None:
        resize = int(image_size / CROP_FRACTION)
    if resize < image_size:
        raise ValueError(f"resize ({resize}) must be at least image_size ({image_size}): the centre "
                         "crop is taken from the resized image")
    return image_size, resize


def eval_transform(image, image_size: int, resize: int):  # type: ignore[no-untyped-def]
    """Resize a PIL image's shorter side to ``resize`` (bicubic), then centre-crop ``image_size``."""
    from PIL import Image

    w, h = image.size
    scale = resize / min(w, h)
    new_w, new_h = max(image_size, round(w * scale)), max(image_size, round(h * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
    return image.crop((left, top, left + image_size, top + image_size))


def read_image(path: Path, gray: bool, image_size: int | None = None, resize: int | None = None,
               square: bool = False) -> np.ndarray:
    """One image file as a ``uint8`` array ``(H, W, C)``, ``C`` 1 (``gray``) or 3.

    Args:
        path: The image file.
        gray: Read as one channel (``L``) rather than RGB.
        image_size: Crop (or, with ``square``, resize) to this size; ``None`` keeps the size.
        resize: Shorter side before the crop (see :func:`eval_transform`).
        square: Resize the whole image to ``image_size x image_size`` (no crop).

    Raises:
        DatasetError: The file cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if gray else "RGB")
            if image_size is not None and square:
                im = im.resize((image_size, image_size), Image.Resampling.BICUBIC)
            elif image_size is not None:
                assert resize is not None
                im = eval_transform(im, image_size, resize)
            array = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot read image {path}: {e}; delete or replace the file") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def is_gray(path: Path) -> bool:
    """Whether ``path``'s image has a single (grey) channel, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode in _GRAY_MODES
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot read image {path}: {e}; delete or replace the file") from None


def stack_images(arrays: Sequence[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
    """``(N, C, H, W)`` ``uint8`` from same-sized ``(H, W, C)`` arrays; names the first odd file."""
    if not arrays:
        return np.zeros((0, 3, 1, 1), dtype=np.uint8)
    first = arrays[0].shape
    for array, path in zip(arrays, paths, strict=True):
        if array.shape != first:
            raise DatasetError(
                f"images differ in size: {paths[0]} is {first[1]}x{first[0]}, {path} is "
                f"{array.shape[1]}x{array.shape[0]}; pass image_size (CLI: --image-size) to resize "
                "and centre-crop them all")
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names from a text file, one per line (blank lines and surrounding spaces ignored).

    Raises:
        DatasetError: The file is missing, not UTF-8, empty, or names a class twice.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"classes file {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read classes file {path}: {e}") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DatasetError(f"classes file {path} is empty; write one class name per line")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DatasetError(f"classes file {path} names class {name!r} twice")
        seen.add(name)
    return names
