"""Your own arrays: an ``.npz`` file (``numpy.savez``) with images ``x`` and labels ``y``.

* ``x``: ``uint8`` (0..255) or float (``float16/32/64``) in ``[0, 1]``; shape ``(N, C, H, W)``
  or ``(N, H, W, C)`` with ``C`` 1 or 3 (the layout is told by where that channel axis is),
  or ``(N, H, W)`` for grey images. A shape that fits both layouts (e.g. ``(N, 3, 8, 3)``) is
  refused unless the file also holds ``layout`` (the string ``"NCHW"`` or ``"NHWC"``).
  Floats are stored as ``uint8`` like every advlab dataset (rounded to the nearest 1/255).
* ``y``: integers ``>= 0``, shape ``(N,)``.
* optional ``classes``: class names (a string array), else the classes file, else ``"0".."K-1"``.
* splits: ``x``/``y`` serve every split; or the file holds ``x_train``/``y_train`` and
  ``x_test``/``y_test``.

The file is read with ``numpy.load(allow_pickle=False)``: an object array (a pickle) is
refused, never unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .dataset import DatasetError, ImageDataset
from .images import read_class_names

__all__ = ["load_npz"]

_CHANNELS = (1, 3)


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise DatasetError(f"npz file {path} not found")
    if not path.is_file():
        raise DatasetError(f"{path} is not a file; npz: needs a file written by numpy.savez")
    try:
        npz = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise DatasetError(f"{path} holds pickled data, which advlab never loads; "
                               "save plain numeric arrays (x uint8 or float, y int64)") from None
        raise DatasetError(f"cannot read {path} as .npz: {_why(e)}") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any parser failure on a user's file is bad input
        raise DatasetError(f"cannot read {path} as .npz (corrupt or not written by numpy.savez): "
                           f"{_why(e)}") from None
    if not isinstance(npz, Mapping):
        raise DatasetError(f"{path} holds a single array, not an .npz archive; save it with "
                           "numpy.savez(path, x=images, y=labels)")
    try:
        with npz:
            arrays = {k: npz[k] for k in npz.files}
        for k, v in arrays.items():
            if not isinstance(v, np.ndarray):  # numpy hands back raw bytes for a non-.npy member
                raise DatasetError(f"{path} member {k!r} is not a numpy array; save the arrays with "
                                   "numpy.savez(path, x=images, y=labels)")
        return arrays
    except DatasetError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise DatasetError(f"{path} holds object arrays (pickled data), which advlab never loads; "
                               "save plain numeric arrays (x uint8 or float, y int64)") from None
        raise DatasetError(f"cannot read {path} as .npz: {_why(e)}") from None
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile/zlib/tokenize errors of a corrupt archive
        raise DatasetError(f"cannot read {path} as .npz (corrupt or not written by numpy.savez): "
                           f"{_why(e)}") from None


def _why(e: BaseException) -> str:
    """The first line of an exception's message (or its type's name)."""
    return (str(e).splitlines() or [type(e).__name__])[0] or type(e).__name__


def _pick(arrays: dict[str, np.ndarray], path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if "x" in arrays and "y" in arrays:
        return arrays["x"], arrays["y"]
    xs, ys = f"x_{split}", f"y_{split}"
    if xs in arrays and ys in arrays:
        return arrays[xs], arrays[ys]
    raise DatasetError(f"{path} needs arrays 'x' and 'y' (or '{xs}' and '{ys}'); it holds "
                       f"{', '.join(sorted(arrays)) or 'nothing'}")


def _layout(x: np.ndarray, path: Path, hint: np.ndarray | None) -> np.ndarray:
    """``x`` as ``(N, C, H, W)``."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DatasetError(f"x in {path} has shape {x.shape}; expected (N, C, H, W), (N, H, W, C) "
                           "or (N, H, W)")
    if hint is not None:
        layout = str(hint.item()) if hint.ndim == 0 and hint.dtype.kind == "U" else None
        if layout not in ("NCHW", "NHWC"):
            raise DatasetError(f"'layout' in {path} must be the string 'NCHW' or 'NHWC'")
    else:
        first, last = x.shape[1] in _CHANNELS, x.shape[3] in _CHANNELS
        if first and last:
            raise DatasetError(f"x in {path} has shape {x.shape}, which could be NCHW or NHWC; add "
                               "layout='NCHW' (or 'NHWC') to the file")
        if not first and not last:
            raise DatasetError(f"x in {path} has shape {x.shape}: no axis of 1 or 3 channels at "
                               "position 1 (NCHW) or 3 (NHWC)")
        layout = "NCHW" if first else "NHWC"
    x = x if layout == "NCHW" else x.transpose(0, 3, 1, 2)
    if x.shape[1] not in _CHANNELS:
        raise DatasetError(f"x in {path} has {x.shape[1]} channels in layout {layout}; need 1 or 3")
    return x


def _to_uint8(x: np.ndarray, path: Path) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind != "f":
        raise DatasetError(f"x in {path} has dtype {x.dtype}; use uint8 (0..255) or float in [0, 1]")
    if x.size and not np.isfinite(x).all():
        raise DatasetError(f"x in {path} contains NaN or infinite values")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise DatasetError(f"x in {path} has values in [{float(x.min()):.4g}, {float(x.max()):.4g}]; "
                           "float images must lie in [0, 1] (divide uint8 pixels by 255)")
    return np.rint(x.astype(np.float64) * 255).astype(np.uint8)


def _labels(y: np.ndarray, n: int, path: Path) -> np.ndarray:
    if y.dtype.kind not in "iu":
        raise DatasetError(f"y in {path} has dtype {y.dtype}; labels must be integers "
                           "(save y.astype(numpy.int64))")
    if y.ndim != 1:
        raise DatasetError(f"y in {path} has shape {y.shape}; expected (N,) class indices")
    if len(y) != n:
        raise DatasetError(f"x and y in {path} disagree: {n} images, {len(y)} labels")
    if y.size and int(y.min()) < 0:
        raise DatasetError(f"y in {path} has a negative label ({int(y.min())}); labels are 0..K-1")
    return y.astype(np.int64)


def _class_names(arrays: dict[str, np.ndarray], path: Path, classes_file: str | Path | None,
                 y: np.ndarray) -> tuple[str, ...]:
    if classes_file is not None:
        names = read_class_names(classes_file)
    elif "classes" in arrays:
        raw = arrays["classes"]
        if raw.dtype.kind != "U" or raw.ndim != 1 or raw.size == 0:
            raise DatasetError(f"'classes' in {path} must be a 1-D array of strings")
        names = tuple(str(c) for c in raw)
    else:
        return tuple(str(i) for i in range(int(y.max()) + 1 if y.size else 1))
    if y.size and int(y.max()) >= len(names):
        raise DatasetError(f"y in {path} has label {int(y.max())} but only {len(names)} class names "
                           f"are given (labels must be 0..{len(names) - 1})")
    return names


def load_npz(path: str | Path, split: str = "test", classes_file: str | Path | None = None) -> ImageDataset:
    """Load images and labels from an ``.npz`` file (format in the module docstring).

    Args:
        path: The ``.npz`` file.
        split: ``"train"`` or ``"test"``: picks ``x_<split>``/``y_<split>`` when there is no ``x``/``y``.
        classes_file: Class names, one per line (overrides a ``classes`` array in the file).

    Returns:
        A ``uint8`` :class:`ImageDataset` named ``npz:<path>``.

    Raises:
        DatasetError: Missing/corrupt file, missing arrays, object arrays, wrong dtype, an
            ambiguous or unknown layout, float values outside ``[0, 1]``, mismatched lengths,
            negative or non-integer labels, labels beyond the class names.
    """
    path = Path(path).expanduser()
    arrays = _read(path)
    x, y = _pick(arrays, path, split)
    x = _to_uint8(_layout(x, path, arrays.get("layout")), path)
    y = _labels(y, len(x), path)
    names = _class_names(arrays, path, classes_file, y)
    return ImageDataset(images=torch.from_numpy(np.ascontiguousarray(x)), labels=torch.from_numpy(y),
                        classes=names, name=f"npz:{path}", split=split)
