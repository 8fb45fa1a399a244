"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every write goes to a temporary file in the target's directory, is flushed and
``fsync``-ed, and is then moved into place with :func:`os.replace` (atomic on
POSIX and Windows within one file system). A write that fails or is interrupted
leaves the old file; on an exception the temporary file is removed.

This is the bottom-layer home of the writers that checkpoints, caches, the
cascade state and the command line share; :mod:`advlab.checkpoint` re-exports
them.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "remove_orphans"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + ``os.replace``).

    Args:
        path: the target file; missing parent directories are created.
        data: the file's new content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: a temporary file of this module: ``.<target>.<pid>.<8 random chars>.tmp``
_TMP = re.compile(r"^(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_orphans(path: str | Path) -> list[Path]:
    """Delete the temporary files of ``path`` that a killed writer left behind.

    A temporary file names its writer's pid; it is an orphan when that process no longer
    exists (a ``kill -9`` during a write). Live writers' files, and every other file, are
    left alone. Called before every atomic write, so a rerun cleans up after a kill.

    Returns:
        The files removed.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        m = _TMP.match(entry.name[len(prefix):])
        if m is None or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2,
                      sort_keys: bool = False) -> None:
    """Write ``obj`` as JSON (plus a final newline) to ``path`` atomically.

    Values JSON cannot represent (paths, dates, ...) are written as ``str(value)``; NaN as
    ``null`` and infinities as ``"inf"``/``"-inf"`` (strict JSON has neither).

    Args:
        path: the target file; missing parent directories are created.
        obj: a JSON-serialisable object.
        indent: ``json.dumps`` indentation (``None``: one line).
        sort_keys: sort the keys of every object.
    """
    text = json.dumps(_finite(obj), indent=indent, sort_keys=sort_keys, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _finite(obj: Any) -> Any:
    """``obj`` with NaN as ``None`` and infinities as ``"inf"``/``"-inf"`` (strict JSON has neither)."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        return obj if math.isfinite(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
