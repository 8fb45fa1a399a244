"""How ``advlab`` turns an exception into what a user reads, and an exit code.

Three kinds, told apart by what raised them, not by their type alone:

- **Usage errors** (exit 2, one line): bad input. :class:`UsageError`, ``DatasetError``,
  ``CheckpointError``, ``ModelError`` ("your model raised ..."), missing or unwritable
  files, and every ``ValueError``/``TypeError`` that advlab raises *on purpose* -- a
  ``raise`` statement in advlab's own source, which is where its checks live.
- **Environment errors** (exit 1, one line): the disk is full, the filesystem read-only, a
  device failed (``OSError`` other than the file-naming ones).
- **Internal errors** (exit 1): anything else, e.g. a ``TypeError`` raised inside PyTorch
  or Python by an advlab bug. One line says so and asks for a report; ``--debug`` or
  ``ADVLAB_DEBUG=1`` shows the traceback (for every kind of error).
"""

from __future__ import annotations

import errno
import linecache
from pathlib import Path
from types import TracebackType

__all__ = ["classify", "USAGE", "FAILURE"]

USAGE = 2
FAILURE = 1

_PACKAGE = Path(__file__).resolve().parents[1]  # src/advlab
_NAMING_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                  FileExistsError)


def _innermost(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def _raised_on_purpose(exc: BaseException) -> bool:
    """True when the innermost frame is a ``raise`` statement in advlab's own source."""
    tb = _innermost(exc.__traceback__)
    if tb is None:
        return False
    filename = tb.tb_frame.f_code.co_filename
    try:
        inside = Path(filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False
    return inside and linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _os_message(exc: OSError) -> str:
    what = exc.strerror or _first_line(exc)
    return f"{exc.filename}: {what}" if exc.filename else what


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one line to print for ``exc`` (without the ``error:`` prefix)."""
    from advlab.checkpoint import CheckpointError
    from advlab.cli._common import UsageError
    from advlab.data import DatasetError
    from advlab.experiments.photos import PhotosUnavailable
    from advlab.models.guard import ModelError

    if isinstance(exc, (UsageError, DatasetError, CheckpointError, ModelError)):
        return USAGE, _first_line(exc)
    if isinstance(exc, PhotosUnavailable):  # an optional extra is not installed: environment
        return FAILURE, _first_line(exc)
    if isinstance(exc, _NAMING_ERRORS):
        return USAGE, _os_message(exc) if exc.strerror else _first_line(exc)
    if isinstance(exc, OSError):
        hint = {errno.ENOSPC: " (free some space, or write elsewhere with --out)",
                errno.EROFS: " (write elsewhere with --out)"}.get(exc.errno or 0, "")
        return FAILURE, _os_message(exc) + hint
    if isinstance(exc, (ValueError, TypeError)) and _raised_on_purpose(exc):
        return USAGE, _first_line(exc)
    return FAILURE, (f"internal error, please report it: {type(exc).__name__}: {_first_line(exc)} "
                     "(rerun with --debug or ADVLAB_DEBUG=1 for the traceback)")
