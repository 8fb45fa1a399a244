"""What every ``advlab`` command shares: the app, consoles, options, loaders, JSON output.

:mod:`advlab.cli.app` and the ``cmd_<capability>`` modules import from here and
register their commands on :data:`app`; nothing here imports them back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from torch import nn

__all__ = [
    "app", "console", "out_console", "DataDir", "CacheDir", "UsageError", "_cache", "_parse_classes",
    "_parse_floats", "_load_data", "_load_model", "_write_json", "load_lecture_data", "check_output",
]

app = typer.Typer(
    name="advlab",
    help="Adversarial examples and adversarial training: attacks, evaluation, training, reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
out_console = Console()

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="ADVLAB_DATA",
                 help="Folder with dataset files (or its parent). Env: ADVLAB_DATA."),
]
CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", envvar="ADVLAB_CACHE",
                 help="Download and model cache (default ~/.cache/advlab). Env: ADVLAB_CACHE."),
]


class UsageError(ValueError):
    """Bad command-line input."""


def _cache(cache_dir: Path | None) -> Path:
    return (cache_dir or Path.home() / ".cache" / "advlab").expanduser()


def _parse_classes(spec: str | None) -> list[int] | None:
    """``"3,7"`` (or ``"3vs7"``) -> ``[3, 7]``; ``"0-4"`` -> ``[0, 1, 2, 3, 4]`` (an inclusive range).

    Negative, duplicate or malformed entries are a usage error, never reinterpreted.
    """
    if spec is None or not spec.strip():
        return None
    bad = UsageError(f"--classes must be class indices such as 3,7 or a range such as 0-4, got {spec!r}")
    out: list[int] = []
    for part in spec.replace("vs", ",").split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not part or not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
            raise bad
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise bad
        out.extend(range(first, last + 1))
    if len(set(out)) != len(out):
        raise UsageError(f"--classes lists a class twice: {spec!r}")
    return out


def _parse_floats(spec: str, what: str) -> list[float]:
    try:
        return [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be a comma-separated list of numbers, got {spec!r}") from None


def _load_data(name: str, split: str, data_dir: Path | None, cache_dir: Path | None,
               limit: int | None, classes: str | None, download: bool = True,
               image_size: int | None = None, resize: int | None = None,
               classes_file: Path | None = None):  # type: ignore[no-untyped-def]
    from advlab.data import load_dataset

    cls = _parse_classes(classes)
    return load_dataset(name, split, data_dir=data_dir, download=download, limit=limit,
                        classes=cls, relabel=cls is not None, cache_dir=_cache(cache_dir),
                        image_size=image_size, resize=resize, classes_file=classes_file)


def _load_model(spec: str) -> nn.Module:
    """The model ``spec`` names, guarded so its own failures read "your model raised ..."

    See :func:`_open_model` for the forms ``spec`` may take and
    :mod:`advlab.models.guard` for what the guard checks.
    """
    from advlab.models.guard import guard_model

    return guard_model(_open_model(spec), "the model" if _is_advlab_checkpoint(spec) else "your model")


def _is_advlab_checkpoint(spec: str) -> bool:
    return (Path(spec) / "model.json").is_file()


def _open_model(spec: str) -> nn.Module:
    """An advlab checkpoint directory, or any form :func:`advlab.models.load_external_model` takes
    (file.py:function, file.py:function@weights.safetensors, a TorchScript file, efficientnet-lite0)."""
    from advlab.checkpoint import load_model
    from advlab.models.external import load_external_model

    if Path(spec).is_dir() and (Path(spec) / "model.json").exists():
        return load_model(Path(spec))
    try:
        return load_external_model(spec)
    except ValueError as e:
        raise UsageError(str(e)) from None


def check_output(path: Path, kind: str, option: str = "--out", example: str = "results.json") -> Path:
    """Check, before any work, that ``path`` can be written as a ``kind`` ("file" or "dir").

    Probes the nearest existing folder with a temporary file (creating nothing), so a
    read-only location, a directory given for a file (or a file for a directory) fails in
    one line at once instead of after an hour of attacks.
    """
    import tempfile

    path = Path(path).expanduser()
    if kind == "file" and path.is_dir():
        raise UsageError(f"{option} {path} is a directory; give a file name such as {path / example}")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a directory; give a folder name")
    folder = path if kind == "dir" else path.parent
    while not folder.exists() and folder != folder.parent:  # nothing is created here
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"cannot write {option} {path}: {folder} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".advlab-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"cannot write {option} {path}: {e.strerror or e}") from None
    return path


def _write_json(path: Path, obj: Any) -> None:
    """Write results atomically; if that fails, save them to a fallback file and say where."""
    import datetime
    import tempfile

    from advlab.io import atomic_write_json

    try:
        atomic_write_json(path, obj)
    except OSError as e:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        fallback = Path(tempfile.gettempdir()) / f"advlab-results-{stamp}-{Path(path).name}"
        try:
            atomic_write_json(fallback, obj)
        except OSError:
            raise OSError(e.errno, f"could not write {path} ({e.strerror}) nor a fallback copy") from None
        raise OSError(e.errno, f"could not write {path} ({e.strerror}); the results were saved "
                               f"to {fallback}") from None


def load_lecture_data(dataset: str, data_dir: Path | None, cache: Path, download: bool):  # type: ignore[no-untyped-def]
    """Train and test sets for the report; MNIST falls back to bundled digits with a notice."""
    from advlab.data import DatasetError, load_dataset

    notices: list[str] = []
    try:
        train_ds = load_dataset(dataset, "train", data_dir=data_dir, download=download, cache_dir=cache)
        test_ds = load_dataset(dataset, "test", data_dir=data_dir, download=download, cache_dir=cache)
    except DatasetError as e:
        if dataset.lower() != "mnist":
            raise
        notice = f"MNIST unavailable ({e}); falling back to scikit-learn's bundled 8x8 digits."
        console.print(f"[yellow]notice:[/] {escape(notice)}")
        notices.append(notice)
        train_ds, test_ds = load_dataset("digits", "train"), load_dataset("digits", "test")
    return train_ds, test_ds, notices
