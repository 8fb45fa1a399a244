"""No tracked file names one machine's folders (issue 13, item 8).

A user's checkout is anywhere: data comes through ``--data-dir`` / ``ADVLAB_DATA`` (examples
use ``../shared/data`` relative to the project root), bench results record paths relative
to the project, and temporary files go to ``tempfile.gettempdir()`` (``${TMPDIR:-/tmp}`` in
shell lines).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: an absolute work, home or temp folder (not ``${TMPDIR:-/tmp}/x``, ``~/x``, ``a/tmp/x``)
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|root|home/[\w.-]+|tmp)/")
#: files that must name such paths (this test's own pattern and docstring)
ALLOWED = {"tests/test_no_machine_paths.py"}


def offenders(root: Path = ROOT) -> list[str]:
    """``"path:line: text"`` for every tracked text line that names a machine path."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    found = []
    for rel in sorted(p for p in out.stdout.decode().split("\0") if p):
        path = root / rel
        if rel in ALLOWED or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary
            continue
        text = data.decode("utf-8", errors="replace")
        for i, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{rel}:{i}: {line.strip()[:160]}")
    return found


def _git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    r = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True)
    return r.returncode == 0 and Path(r.stdout.strip()).resolve() == ROOT


@pytest.mark.parametrize(("line", "bad"), [
    ("--data-dir /work/shared/data", True),
    ('"checkpoint": "/root/.cache/advlab/m"', True),
    ("cache at /home/alice/.cache", True),
    ("flock /tmp/advlab-heavy.lock", True),
    ("--data-dir ../shared/data", False),
    ('flock "${TMPDIR:-/tmp}/advlab-heavy.lock"', False),
    ("~/.cache/advlab/bench", False),
    ("runs/tmp/x and src/work/y", False),
])
def test_pattern(line: str, bad: bool) -> None:
    assert bool(MACHINE_PATH.search(line)) is bad


def test_no_machine_paths_in_tracked_files() -> None:
    if not _git_checkout():
        pytest.skip("not a git checkout of the project (git ls-files needs one)")
    bad = offenders()
    assert not bad, (f"{len(bad)} tracked lines name one machine's folders; use --data-dir/"
                     "ADVLAB_DATA, ../shared/data, paths relative to the project or "
                     "tempfile.gettempdir():\n" + "\n".join(bad))
