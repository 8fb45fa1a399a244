"""Fuzz the ``--dataset folder:PATH`` reader (:func:`advlab.data.folder.load_image_folder`,
Pillow underneath) with any image bytes.

The input is one image file of class ``b`` (its name's extension picked by the first byte),
next to a valid 6x6 PNG of class ``a``. A read (resized to 4x4) either returns a ``uint8``
:class:`~advlab.data.ImageDataset` of 2 images and 2 classes, or raises a one-line
:class:`~advlab.data.DatasetError` that names the file.

Run: ``python tests/fuzz/fuzz_folder.py -runs=3000 -timeout=5``.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fuzzlib import Finding, expect_clean, instrumented, run, scratch_dir  # noqa: E402

with instrumented(__name__ == "__main__"):
    import numpy as np
    import torch
    from PIL import Image

    from advlab.data import DatasetError
    from advlab.data.folder import load_image_folder

_DIR = scratch_dir()
_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def _image(fmt: str, size: tuple[int, int] = (6, 6), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    arr = (np.arange(size[0] * size[1] * 3) % 256).astype(np.uint8).reshape(size[1], size[0], 3)
    img = Image.fromarray(arr).convert(mode)
    img.save(buf, format=fmt)
    return buf.getvalue()


_GOOD = _image("PNG")


def seeds() -> list[bytes]:
    """Valid images in each format the reader takes, colour and grey, other sizes."""
    return [bytes([0]) + _image("PNG"), bytes([1]) + _image("JPEG"), bytes([3]) + _image("BMP"),
            bytes([4]) + _image("GIF", mode="P"), bytes([0]) + _image("PNG", (9, 5), "L"),
            bytes([5]) + _image("WEBP")]


def one_input(data: bytes) -> None:
    """Lay out the folder, read it, check the dataset or the error."""
    if not data:
        return
    root = _DIR / "root"
    shutil.rmtree(root, ignore_errors=True)
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "good.png").write_bytes(_GOOD)
    name = "x" + _EXT[data[0] % len(_EXT)]
    (root / "b" / name).write_bytes(data[1:])
    ds = expect_clean(lambda: load_image_folder(root, image_size=4), (DatasetError,))
    if ds is None:
        return
    images, labels = ds.images, ds.labels  # type: ignore[attr-defined]
    if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (3, 4, 4) or images.shape[0] != 2:
        raise Finding(f"images of dtype {images.dtype} and shape {tuple(images.shape)}")
    if sorted(labels.tolist()) != [0, 1]:
        raise Finding(f"labels {labels.tolist()}")


if __name__ == "__main__":
    run(one_input, seeds())
