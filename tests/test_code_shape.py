"""Code shape: no library function (outside ``cli/``) is over 80 lines (issue 13, item 6)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "advlab"
MAX_LINES = 80
#: the command-line layer: typer commands list their options one per line
EXEMPT = ("cli",)


def long_functions(root: Path = SRC, limit: int = MAX_LINES) -> list[str]:
    """``"path:line name (n lines)"`` for every function or method longer than ``limit``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in EXEMPT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > limit:
                    found.append(f"src/advlab/{rel.as_posix()}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_long_functions_finds_a_long_one(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "app.py").write_text(f"def command():\n{body}\n")
    assert long_functions(tmp_path) == [f"src/advlab/m.py:1 long ({MAX_LINES + 1} lines)"]


def test_no_library_function_over_80_lines() -> None:
    offenders = long_functions()
    assert not offenders, (f"{len(offenders)} functions over {MAX_LINES} lines (split them into "
                           "named steps):\n" + "\n".join(offenders))
