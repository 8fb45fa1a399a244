"""Fuzz the ``--dataset npz:PATH`` reader (:func:`advlab.data.npz.load_npz`) with any bytes.

A read either returns an :class:`~advlab.data.ImageDataset` (``uint8`` NCHW images, labels in
range, one per image) or raises a one-line :class:`~advlab.data.DatasetError`; it never
unpickles (the audit hook of ``_fuzzlib`` flags ``exec``/``compile`` and process starts).

Run: ``python tests/fuzz/fuzz_npz.py -runs=5000 -timeout=5``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fuzzlib import Finding, expect_clean, instrumented, run, scratch_dir  # noqa: E402

with instrumented(__name__ == "__main__"):
    import numpy as np

    from advlab.data import DatasetError, ImageDataset
    from advlab.data.npz import load_npz

_DIR = scratch_dir()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def seeds() -> list[bytes]:
    """Valid archives: uint8 NCHW and NHWC, float images, named splits."""
    x = (np.arange(2 * 1 * 4 * 4) % 256).astype(np.uint8).reshape(2, 1, 4, 4)
    y = np.array([0, 1])
    return [_npz(x=x, y=y), _npz(x=x.transpose(0, 2, 3, 1), y=y),
            _npz(x=x.astype(np.float32) / 255, y=y), _npz(x_test=x, y_test=y, x_train=x, y_train=y)]


def one_input(data: bytes) -> None:
    """Write ``data`` as ``x.npz`` and read it; check the dataset or the error."""
    path = _DIR / "x.npz"
    path.write_bytes(data)
    ds = expect_clean(lambda: load_npz(path), (DatasetError,))
    if ds is None:
        return
    if not isinstance(ds, ImageDataset) or ds.images.dim() != 4 or len(ds.labels) != len(ds.images):
        raise Finding(f"load_npz returned {type(ds).__name__} of inconsistent shape")
    if len(ds.labels) and (int(ds.labels.min()) < 0 or int(ds.labels.max()) >= len(ds.classes)):
        raise Finding("labels out of range of the class names")


if __name__ == "__main__":
    run(one_input, seeds())
