"""Fuzz the CIFAR-10 batch reader (:func:`advlab.data.cifar10.load_cifar10_batch`) and its
restricted unpickler with any bytes.

A read either returns ``(uint8 (N, 3, 32, 32), int64 (N,))`` with labels in 0..9, or raises a
one-line :class:`~advlab.data.DatasetError`. It never runs code from the pickle (the audit
hook of ``_fuzzlib`` flags ``exec``, process starts, file removal and sockets) and never
allocates without a bound (the allowed ``bytes``/``ndarray`` constructors are size-checked).

Run: ``python tests/fuzz/fuzz_cifar.py -runs=5000 -timeout=5``.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fuzzlib import Finding, expect_clean, instrumented, run, scratch_dir  # noqa: E402

with instrumented(__name__ == "__main__"):
    import numpy as np

    from advlab.data import DatasetError
    from advlab.data.cifar10 import load_cifar10_batch

_DIR = scratch_dir()


def seeds() -> list[bytes]:
    """Valid batches: byte and str keys, lists and arrays of labels, protocols 2 and 4."""
    data = (np.arange(2 * 3072) % 256).astype(np.uint8).reshape(2, 3072)
    out = []
    for proto in (2, 4):
        out.append(pickle.dumps({b"data": data, b"labels": [3, 7], b"batch_label": b"x"}, protocol=proto))
        out.append(pickle.dumps({"data": data[:1], "labels": np.array([9])}, protocol=proto))
    return out


def one_input(data: bytes) -> None:
    """Read ``data`` as a CIFAR-10 batch file; check the arrays or the error."""
    path = _DIR / "data_batch_1"
    path.write_bytes(data)
    got = expect_clean(lambda: load_cifar10_batch(path), (DatasetError,))
    if got is None:
        return
    images, labels = got  # type: ignore[misc]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
        raise Finding(f"images of dtype {images.dtype} and shape {images.shape}")
    if labels.dtype != np.int64 or labels.shape != (images.shape[0],):
        raise Finding(f"labels of dtype {labels.dtype} and shape {labels.shape} for {images.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise Finding("labels outside 0..9")


if __name__ == "__main__":
    run(one_input, seeds())
