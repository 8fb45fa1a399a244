"""CIFAR-10 from the official "python version" batches.

The data is the folder ``cifar-10-batches-py`` (``data_batch_1`` .. ``data_batch_5``,
``test_batch``, ``batches.meta``) or the tarball ``cifar-10-python.tar.gz`` that contains it.
A tarball is extracted member by member into the cache (only the expected regular files,
never links or paths outside the target), so a hostile archive cannot write elsewhere.

The batches are Python pickles. They are read with :class:`RestrictedUnpickler`, which only
resolves the few globals needed to rebuild numpy arrays, so loading a batch can never
execute arbitrary code.

References:
    A. Krizhevsky. *Learning Multiple Layers of Features from Tiny Images*. Tech. report,
    University of Toronto, 2009. https://www.cs.toronto.edu/~kriz/cifar.html
"""

from __future__ import annotations

import importlib
import io
import logging
import math
import os
import pickle
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._locate import default_cache_dir, not_found_message, search_dirs, suggested_dir
from .dataset import SPLITS, DatasetError, ImageDataset
from .download import DownloadError, download_file

__all__ = [
    "CIFAR10_BATCH_DIR",
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_MIRRORS",
    "CIFAR10_TARBALL",
    "RestrictedUnpickler",
    "extract_cifar10_tarball",
    "load_cifar10",
    "load_cifar10_batch",
    "restricted_load",
]

logger = logging.getLogger(__name__)

CIFAR10_BATCH_DIR = "cifar-10-batches-py"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_MIRRORS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)
#: Published MD5 of ``cifar-10-python.tar.gz``.
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_SPLIT_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_META = "batches.meta"
_ALL_MEMBERS = (*_SPLIT_BATCHES["train"], *_SPLIT_BATCHES["test"], _META)
_PIXELS = 3 * 32 * 32


def _numpy_reconstruct() -> Any:
    """Return numpy's ``_reconstruct`` without touching the deprecated ``numpy.core``."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):  # pragma: no cover - depends on numpy version
            continue
    raise pickle.UnpicklingError("numpy's _reconstruct is unavailable")  # pragma: no cover


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


#: most bytes one call of an allowed global may allocate (a CIFAR-10 batch is 30 MB; its
#: arrays' data come from the file, whose size is bounded separately by MAX_BATCH_FILE)
MAX_ALLOCATION = 1 << 28
#: largest batch file read (the real ones are about 31 MB)
MAX_BATCH_FILE = 1 << 28


def _refuse_size(nbytes: int, what: str) -> None:
    if nbytes > MAX_ALLOCATION:
        raise pickle.UnpicklingError(f"refusing {what} of {nbytes} bytes (more than {MAX_ALLOCATION})")


def _nbytes(shape: Any, dtype: Any) -> int:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        raise pickle.UnpicklingError(f"bad array shape {shape!r:.80}")
    return math.prod(dims) * np.dtype(dtype).itemsize


def _bounded_bytes(*args: Any) -> bytes:
    """``bytes(...)``, but ``bytes(n)`` only for a small ``n`` (``bytes(2**33)`` is 8 GiB)."""
    if args and isinstance(args[0], int):
        _refuse_size(args[0], "bytes()")
    return bytes(*args)


class _BoundedNdarray:
    """Stands for ``numpy.ndarray`` in a pickle: calling it checks the size first, and
    :func:`_bounded_reconstruct` swaps the real class back in."""

    def __call__(self, shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
        _refuse_size(_nbytes(shape, dtype), "an array")
        return np.ndarray(shape, dtype, *args, **kwargs)


_NDARRAY = _BoundedNdarray()


def _bounded_reconstruct() -> Callable[..., Any]:
    real = _numpy_reconstruct()

    def reconstruct(cls: Any, shape: Any, dtype: Any) -> Any:
        if cls is _NDARRAY:
            cls = np.ndarray
        if cls is not np.ndarray:
            raise pickle.UnpicklingError(f"refusing to rebuild {cls!r:.80} (only numpy.ndarray)")
        _refuse_size(_nbytes(shape, np.uint8), "an array")  # numpy pickles use shape (0,) here
        return real(cls, shape, dtype)

    return reconstruct


def _allowed_globals() -> dict[tuple[str, str], Callable[[], Any]]:
    """``(module, name) -> resolver`` for every global a CIFAR batch may reference."""
    table: dict[tuple[str, str], Callable[[], Any]] = {
        ("numpy", "ndarray"): _constant(_NDARRAY),
        ("numpy", "dtype"): _constant(np.dtype),
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = _bounded_reconstruct
    for builtin in (dict, list, str, int):
        for module in ("builtins", "__builtin__"):
            table[(module, builtin.__name__)] = _constant(builtin)
    for module in ("builtins", "__builtin__"):
        table[(module, "bytes")] = _constant(_bounded_bytes)
    return table


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild plain containers and numpy arrays.

    Only these globals resolve: ``dict``, ``list``, ``str``, ``bytes``, ``int`` (builtins),
    ``numpy.ndarray``, ``numpy.dtype`` and ``numpy.core.multiarray._reconstruct`` (also under
    numpy 2's ``numpy._core``). Any other global (``os.system``, ``builtins.eval``, ...)
    raises :class:`pickle.UnpicklingError` before it can be called. The allowed ones that
    allocate (``bytes(n)``, ``ndarray(shape)``, ``_reconstruct``) refuse more than
    :data:`MAX_ALLOCATION` bytes, so a small file cannot ask for gigabytes.
    """

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global or refuse.

        Args:
            module: Module path named in the pickle.
            name: Attribute name named in the pickle.

        Returns:
            The allowed object.

        Raises:
            pickle.UnpicklingError: The global is not on the allow-list.
        """
        resolver = _ALLOWED.get((module, name))
        if resolver is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return resolver()


def restricted_load(data: bytes | io.BufferedIOBase) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` and ``encoding='bytes'``.

    Args:
        data: Pickle bytes or a binary file object.

    Returns:
        The unpickled object (Python 2 strings come back as ``bytes``).

    Raises:
        pickle.UnpicklingError: The pickle references a forbidden global or is malformed.
    """
    raw = bytes(data) if isinstance(data, (bytes, bytearray)) else data.read()
    _check_opcodes(raw)
    return RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()


#: largest memo index a pickle may name: CPython's unpickler grows its memo table to the
#: index it is given, so ``LONG_BINPUT 175399797`` in a 5 KB file asks for 1.4 GB
MAX_MEMO_INDEX = 1 << 16


def _check_opcodes(raw: bytes) -> None:
    """Refuse a pickle whose opcodes name memo slots beyond :data:`MAX_MEMO_INDEX` (read with
    :func:`pickletools.genops`, which parses and never runs anything)."""
    import pickletools

    for op, arg, _ in pickletools.genops(raw):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET") and (
                isinstance(arg, int) and arg > MAX_MEMO_INDEX):
            raise pickle.UnpicklingError(f"memo index {arg} is out of bounds (more than {MAX_MEMO_INDEX})")


def _get(mapping: dict[Any, Any], key: str) -> Any:
    if key.encode() in mapping:
        return mapping[key.encode()]
    return mapping.get(key)


def _unpickle_file(path: Path) -> dict[Any, Any]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file ({exc})") from exc
    if size > MAX_BATCH_FILE:
        raise DatasetError(f"{path}: {size} bytes is far larger than a CIFAR-10 batch (about 31 MB); "
                           "delete it and download it again")
    try:
        with open(path, "rb") as handle:
            obj = restricted_load(handle)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read file ({exc})") from exc
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        OverflowError,
        MemoryError,  # an array state whose shape asks for more than its bytes (numpy allocates)
        SystemError,  # CPython's checks on a malformed buffer protocol use ("exported buffers")
    ) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__  # pickle's messages can span lines
        raise DatasetError(
            f"{path}: not a valid CIFAR-10 batch ({why}); delete it and download it again"
        ) from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: not a CIFAR-10 batch (a {type(obj).__name__}, not a dict)")
    return obj


def load_cifar10_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch safely.

    Args:
        path: A batch file such as ``data_batch_1`` or ``test_batch``.

    Returns:
        ``(images, labels)``: ``uint8`` array ``(N, 3, 32, 32)`` and ``int64`` array ``(N,)``.

    Raises:
        DatasetError: The file is unreadable, references forbidden globals, or does not have
            the CIFAR-10 layout (``data`` uint8 ``(N, 3072)``, ``labels`` in ``0..9``).
    """
    path = Path(path)
    batch = _unpickle_file(path)
    data = _get(batch, "data")
    labels = _get(batch, "labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"{path}: 'data' is not a uint8 (N, 3072) array")
    if data.shape[1] != _PIXELS:
        raise DatasetError(f"{path}: 'data' rows have {data.shape[1]} values, expected {_PIXELS}")
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: 'labels' is not a list of integers") from exc
    if label_array.shape != (data.shape[0],):
        raise DatasetError(
            f"{path}: {data.shape[0]} images but 'labels' has shape {label_array.shape}"
        )
    if label_array.size and (label_array.min() < 0 or label_array.max() >= len(CIFAR10_CLASSES)):
        raise DatasetError(f"{path}: labels outside 0..9")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32))
    return images, label_array


def _load_class_names(directory: Path) -> tuple[str, ...]:
    meta_path = directory / _META
    if not meta_path.is_file():
        return CIFAR10_CLASSES
    meta = _unpickle_file(meta_path)
    names = _get(meta, "label_names")
    if not isinstance(names, list) or len(names) != len(CIFAR10_CLASSES):
        raise DatasetError(f"{meta_path}: 'label_names' is not a list of 10 names")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def extract_cifar10_tarball(tar_path: str | Path, dest_dir: str | Path) -> Path:
    """Safely extract the CIFAR-10 batches from the official tarball.

    Only regular files named ``cifar-10-batches-py/<batch>`` for the known batch names are
    written; everything else (links, devices, absolute or ``..`` paths, extra files) is
    ignored. Each file is written to a temporary name and renamed into place.

    Args:
        tar_path: ``cifar-10-python.tar.gz``.
        dest_dir: Folder that will receive ``cifar-10-batches-py/``.

    Returns:
        The path of the extracted ``cifar-10-batches-py`` folder.

    Raises:
        DatasetError: The archive is corrupt or lacks some batch files.
    """
    tar_path = Path(tar_path)
    out_dir = Path(dest_dir) / CIFAR10_BATCH_DIR
    wanted = {f"{CIFAR10_BATCH_DIR}/{name}": name for name in _ALL_MEMBERS}
    written: set[str] = set()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar_path, "r:gz") as archive:
            for member in archive:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or not member.isreg():
                    continue
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover - isreg() members always have data
                    continue
                fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=out_dir)
                try:
                    with os.fdopen(fd, "wb") as target, source:
                        while chunk := source.read(1 << 20):
                            target.write(chunk)
                    os.replace(tmp_name, out_dir / name)
                except BaseException:
                    Path(tmp_name).unlink(missing_ok=True)
                    raise
                written.add(name)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DatasetError(
            f"{tar_path}: corrupt or unreadable archive ({exc}); delete it and download it again"
        ) from exc
    missing = [name for name in _ALL_MEMBERS if name not in written and name != _META]
    if missing:
        raise DatasetError(
            f"{tar_path}: archive lacks {CIFAR10_BATCH_DIR}/{', '.join(missing)}; "
            "is it cifar-10-python.tar.gz?"
        )
    logger.info("extracted %s into %s", tar_path, out_dir)
    return out_dir


def _has_batches(directory: Path, batches: tuple[str, ...]) -> bool:
    return all((directory / b).is_file() for b in batches)


def _read_split(directory: Path, split: str) -> ImageDataset:
    parts = [load_cifar10_batch(directory / b) for b in _SPLIT_BATCHES[split]]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return ImageDataset(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        classes=_load_class_names(directory),
        name="cifar10",
        split=split,
    )


def load_cifar10(
    split: str = "train",
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load CIFAR-10 (50,000 train / 10,000 test colour images, 3x32x32, 10 classes).

    Each searched folder (``data_dir``, ``data_dir/cifar10``, then the same under
    ``cache_dir``) may hold the batch files directly, a ``cifar-10-batches-py`` folder, or
    ``cifar-10-python.tar.gz`` (extracted into ``cache_dir/cifar10/``).

    Args:
        split: ``"train"`` or ``"test"``.
        data_dir: Folder to search first.
        cache_dir: Download cache (default ``~/.cache/advlab``); also searched.
        download: Download the tarball into ``cache_dir/cifar10/`` (MD5-verified) if
            nothing is found.

    Returns:
        The dataset with ``uint8`` images of shape ``(N, 3, 32, 32)``.

    Raises:
        DatasetError: Nothing usable was found and the download failed or was disabled, or
            a file is corrupt.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for CIFAR-10; use one of {SPLITS}")
    data = Path(data_dir).expanduser() if data_dir is not None else None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache / "cifar10"
    batches = _SPLIT_BATCHES[split]
    searched = search_dirs("cifar10", data, cache)
    for directory in searched:
        for candidate in (directory, directory / CIFAR10_BATCH_DIR):
            if _has_batches(candidate, batches):
                logger.debug("loading CIFAR-10 %s from %s", split, candidate)
                return _read_split(candidate, split)
    for directory in searched:
        tarball = directory / CIFAR10_TARBALL
        if tarball.is_file():
            return _read_split(extract_cifar10_tarball(tarball, target), split)

    put_into = suggested_dir("cifar10", data, cache)
    files = (f"{CIFAR10_TARBALL} (or {CIFAR10_BATCH_DIR}/ with {', '.join(batches)})",)
    if not download:
        raise DatasetError(not_found_message("CIFAR-10", split, files, searched, put_into, None))
    try:
        tarball = download_file(CIFAR10_TARBALL, CIFAR10_MIRRORS, CIFAR10_MD5, target)
    except DownloadError as exc:
        raise DatasetError(
            not_found_message("CIFAR-10", split, files, searched, put_into, str(exc))
        ) from exc
    return _read_split(extract_cifar10_tarball(tarball, target), split)
