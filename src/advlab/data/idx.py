"""Reader for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian ``uint32`` per dimension, then the payload in row-major order.
MNIST's files use type code ``0x08`` (unsigned byte): images have magic ``2051``
(``0x00000803``, three dimensions ``N, H, W``) and labels ``2049`` (``0x00000801``, one
dimension ``N``). Files may be gzip-compressed (``.gz``) or not.

The reader is strict: a wrong magic number, a truncated or corrupt gzip stream, or a payload
that is not exactly ``prod(dims)`` bytes raises :class:`~advlab.data.DatasetError` naming the
file. It never returns partially read data.

References:
    Y. LeCun, C. Cortes, C. J. C. Burges. *The MNIST database of handwritten digits*,
    http://yann.lecun.com/exdb/mnist/ (file format section).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from .dataset import DatasetError

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "read_idx", "read_idx_images", "read_idx_labels"]

#: Magic number of an IDX file of unsigned bytes with three dimensions (images).
IDX_IMAGES_MAGIC = 0x00000803
#: Magic number of an IDX file of unsigned bytes with one dimension (labels).
IDX_LABELS_MAGIC = 0x00000801

_UBYTE = 0x08
_MAX_NDIM = 8


def _read_bytes(path: Path) -> bytes:
    """Read a whole file, decompressing it if its name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(
            f"{path}: corrupt or truncated gzip file ({exc}); delete it and download it again"
        ) from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file ({exc})") from exc


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file completely and check its structure.

    Args:
        path: The file; a name ending in ``.gz`` is decompressed with :mod:`gzip`.
        magic: Expected magic number (e.g. :data:`IDX_IMAGES_MAGIC`); ``None`` accepts any
            unsigned-byte IDX file.

    Returns:
        A writable ``uint8`` array of shape ``dims`` read from the header.

    Raises:
        DatasetError: The file is missing, unreadable, not valid gzip, truncated, has the
            wrong magic number or type code, or its payload length is not ``prod(dims)``.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    found_magic = struct.unpack(">I", data[:4])[0]
    if zero != 0 or (magic is not None and found_magic != magic):
        expected = f"0x{magic:08x}" if magic is not None else "0x000008NN"
        raise DatasetError(
            f"{path}: not the expected IDX file (magic number 0x{found_magic:08x}, "
            f"expected {expected}); check that the right file sits under this name"
        )
    if type_code != _UBYTE:
        raise DatasetError(
            f"{path}: unsupported IDX type code 0x{type_code:02x} (only unsigned byte 0x08)"
        )
    if not 1 <= ndim <= _MAX_NDIM:
        raise DatasetError(f"{path}: IDX header declares {ndim} dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    expected_len = math.prod(dims)
    payload_len = len(data) - header_len
    if payload_len != expected_len:
        kind = "truncated" if payload_len < expected_len else "oversized"
        raise DatasetError(
            f"{path}: {kind} IDX payload ({payload_len} bytes, header {tuple(dims)} needs "
            f"{expected_len}); delete the file and download it again"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)
    return array.copy()


def read_idx_images(path: str | Path) -> np.ndarray:
    """Read an IDX image file (magic ``2051``).

    Args:
        path: The file (``.gz`` or uncompressed).

    Returns:
        ``uint8`` array of shape ``(N, H, W)``.

    Raises:
        DatasetError: See :func:`read_idx`.
    """
    return read_idx(path, magic=IDX_IMAGES_MAGIC)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Read an IDX label file (magic ``2049``).

    Args:
        path: The file (``.gz`` or uncompressed).

    Returns:
        ``uint8`` array of shape ``(N,)``.

    Raises:
        DatasetError: See :func:`read_idx`.
    """
    return read_idx(path, magic=IDX_LABELS_MAGIC)
