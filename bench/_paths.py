"""Paths in the benchmarks: the data default and the machine-free form results record.

A results file is read on other machines, so it never names this one's folders: a path
is recorded relative to the project root when it lies in the project or next to it
(``../shared/data``), as ``~/...`` under the home folder (the caches), else by its name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

#: the project root (the folder holding ``bench/``)
REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """``$ADVLAB_DATA``, else ``../shared/data`` next to the project root."""
    env = os.environ.get("ADVLAB_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def portable(path: str | Path) -> str:
    """``path`` as a results file records it (see the module docstring)."""
    p = Path(path).expanduser()
    p = p if p.is_absolute() else (Path.cwd() / p)
    p = Path(os.path.normpath(p))
    for base in (REPO, REPO.parent):
        if p.is_relative_to(base):
            return Path(os.path.relpath(p, REPO)).as_posix()
    home = Path.home()
    if p.is_relative_to(home):
        return "~/" + p.relative_to(home).as_posix()
    return p.name


def portable_command(argv: Sequence[str]) -> str:
    """A command line with every absolute path argument (``/x``, ``~/x``, ``--opt=/x``) made portable."""
    def one(arg: str) -> str:
        opt, eq, val = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if val.startswith(("/", "~")):
            return f"{opt}{eq}{portable(val)}"
        return arg

    return " ".join(one(a) for a in argv)
