"""Fuzz the IDX reader (:mod:`advlab.data.idx`): any bytes, plain or as a ``.gz`` file.

The first byte of an input picks the file name (odd: ``x.gz``, decompressed by the reader;
even: ``x``); the rest is the file. A read either returns a ``uint8`` array whose shape is
the header's and whose size matches the payload, or raises a one-line
:class:`~advlab.data.DatasetError`.

Run: ``python tests/fuzz/fuzz_idx.py -runs=20000 -timeout=5``.
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fuzzlib import Finding, expect_clean, instrumented, run, scratch_dir  # noqa: E402

with instrumented(__name__ == "__main__"):
    import numpy as np

    from advlab.data import DatasetError
    from advlab.data.idx import read_idx

_DIR = scratch_dir()


def _idx(dims: tuple[int, ...], type_code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, type_code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    return header + bytes(i % 251 for i in range(int(np.prod(dims))))


def seeds() -> list[bytes]:
    """Valid files (images, labels, other ranks), plain and gzip-compressed."""
    files = [_idx((2, 3, 3)), _idx((5,)), _idx((1, 1)), _idx((0, 28, 28)), _idx((2, 2, 2, 2))]
    plain = [b"\x00" + f for f in files]
    packed = [b"\x01" + gzip.compress(f, mtime=0) for f in files]
    return plain + packed


def one_input(data: bytes) -> None:
    """Read ``data[1:]`` as an IDX file named by ``data[0]``; check the result or the error."""
    if not data:
        return
    path = _DIR / ("x.gz" if data[0] & 1 else "x")
    path.write_bytes(data[1:])
    for magic in (None, 0x00000803):
        array = expect_clean(lambda m=magic: read_idx(path, magic=m), (DatasetError,))
        if array is None:
            continue
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or not array.flags.writeable:
            raise Finding(f"read_idx returned {type(array).__name__} {getattr(array, 'dtype', '')}")
        raw = gzip.decompress(data[1:]) if data[0] & 1 else data[1:]
        ndim = raw[3]
        dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
        if array.shape != dims or array.tobytes() != raw[4 + 4 * ndim:]:
            raise Finding(f"read_idx returned shape {array.shape}, header says {dims}")
        if magic is not None and struct.unpack(">I", raw[:4])[0] != magic:
            raise Finding("read_idx accepted the wrong magic number")


if __name__ == "__main__":
    run(one_input, seeds())
