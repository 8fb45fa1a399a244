"""Where dataset files are looked for, and the message when they are not found.

The library never reads environment variables: callers pass ``data_dir`` (the CLI fills it
from ``--data-dir`` or ``ADVLAB_DATA``) and ``cache_dir``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DATASET_SUBFOLDERS",
    "SYSTEM_DIRS",
    "default_cache_dir",
    "not_found_message",
    "search_dirs",
    "suggested_dir",
]

#: Sub-folder names recognised under a data or cache directory, canonical name first
#: (``MNIST/raw`` and ``FashionMNIST/raw`` are torchvision's layout).
DATASET_SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("cifar10", "cifar-10", "CIFAR10"),
}


#: Folders where a system package installs a dataset, searched after the data and cache dirs
#: (Debian's ``dataset-fashion-mnist`` puts the four IDX ``.gz`` files here; the MD5 checks of
#: the loader still apply).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}


def default_cache_dir() -> Path:
    """Return the default download cache, ``~/.cache/advlab``."""
    return Path.home() / ".cache" / "advlab"


def _ends_with(path: Path, sub: str) -> bool:
    tail = tuple(p.lower() for p in Path(sub).parts)
    return tuple(p.lower() for p in path.parts[-len(tail) :]) == tail


def _claimed_by_other(path: Path, name: str) -> bool:
    """Whether ``path`` is named like another dataset's folder (e.g. ``.../mnist``).

    MNIST and Fashion-MNIST use identical file names, so a folder called ``mnist`` must not
    be read as Fashion-MNIST (and vice versa) just because the files are there.
    """
    return any(
        _ends_with(path, sub)
        for other, subs in DATASET_SUBFOLDERS.items()
        if other != name
        for sub in subs
    )


def search_dirs(name: str, data_dir: Path | None, cache_dir: Path) -> list[Path]:
    """List the folders to search for dataset ``name``, in order.

    ``data_dir`` itself, then its dataset sub-folders (``data_dir/<name>`` and aliases), then
    the same for ``cache_dir``, then the system folders of :data:`SYSTEM_DIRS`. A folder named
    after a *different* dataset is skipped.

    Args:
        name: Canonical dataset name (a key of :data:`DATASET_SUBFOLDERS`).
        data_dir: User-supplied folder, or ``None``.
        cache_dir: Download cache folder.

    Returns:
        Distinct candidate folders (they need not exist).
    """
    found: list[Path] = []
    for base in (data_dir, cache_dir):
        if base is None:
            continue
        candidates = [] if _claimed_by_other(base, name) else [base]
        candidates += [base / sub for sub in DATASET_SUBFOLDERS[name]]
        for candidate in candidates:
            if candidate not in found:
                found.append(candidate)
    for candidate in SYSTEM_DIRS.get(name, ()):
        if candidate not in found:
            found.append(candidate)
    return found


def suggested_dir(name: str, data_dir: Path | None, cache_dir: Path) -> Path:
    """Return the folder to recommend for dataset ``name``'s files in error messages."""
    if data_dir is None:
        return cache_dir / DATASET_SUBFOLDERS[name][0]
    if _claimed_by_other(data_dir, name):
        return data_dir.parent / DATASET_SUBFOLDERS[name][0]
    return data_dir


def not_found_message(
    display: str,
    split: str,
    files: Sequence[str],
    searched: Sequence[Path],
    put_into: Path,
    download_error: str | None,
) -> str:
    """Build the one-line "dataset not found" message.

    Args:
        display: Human name of the dataset (``"MNIST"``).
        split: Requested split.
        files: File names the user should provide.
        searched: Folders that were searched.
        put_into: Folder to suggest for the files.
        download_error: Why the download failed, or ``None`` if downloading was disabled.

    Returns:
        A single-line message.
    """
    where = ", ".join(str(d) for d in searched)
    if download_error is None:
        why = "and download=False"
    else:
        why = f"and download failed ({download_error})"
    return (
        f"{display} ({split}) not found in [{where}] {why}; put {', '.join(files)} into "
        f"{put_into} or pass data_dir (CLI: --data-dir or set ADVLAB_DATA)"
    )
