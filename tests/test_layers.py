"""The layers of advlab and the absence of import cycles, kept by a test.

The layer order is written once, as import-linter contracts in ``.importlinter``.
This test reads them and checks them on its own import graph, built with ``ast``
from every ``import`` in ``src/advlab`` (module level and inside functions), and
looks for cycles between the children of every package. It also runs
``lint-imports`` when it is installed. The checkers are tried on small graphs
with a known defect first, so a checker that finds nothing cannot pass silently.
"""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "advlab"

Graph = Mapping[str, set[str]]


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: {imported advlab modules}}`` from every import statement, lazy ones included."""
    files = {_module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # ``from advlab.cli import cmd_x`` imports the submodule cmd_x
                subs = [f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in files]
                targets = subs if len(subs) == len(node.names) else [origin, *subs]
            for t in targets:
                while t and t not in files:  # ``import advlab.a.b`` of a name, not a module
                    t = t.rpartition(".")[0]
                if t.split(".")[0] == package and t != mod:
                    graph[mod].add(t)
    return graph


def sibling_graph(graph: Graph, parent: str) -> dict[str, set[str]]:
    """Imports between the children of ``parent`` (a child stands for all its descendants)."""
    prefix = parent + "."

    def child(m: str) -> str | None:
        return prefix + m[len(prefix):].split(".")[0] if m.startswith(prefix) else None

    out: dict[str, set[str]] = defaultdict(set)
    for src, dests in graph.items():
        a = child(src)
        if a is None:
            continue
        out[a]
        for d in dests:
            b = child(d)
            if b is not None and b != a:
                out[a].add(b)
    return dict(out)


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def packages(graph: Graph) -> list[str]:
    """Every module that has children: the root package and its subpackages."""
    return sorted({m.rpartition(".")[0] for m in graph if "." in m})


def layer_contracts(config: Path = ROOT / ".importlinter") -> dict[str, list[tuple[list[str], bool]]]:
    """The ``layers`` contracts: name -> [(modules of a layer, independent?)], top layer first."""
    cp = configparser.ConfigParser()
    cp.read(config, encoding="utf-8")
    out = {}
    for sec in cp.sections():
        if sec.startswith("importlinter:contract:") and cp[sec].get("type") == "layers":
            layers = []
            for line in cp[sec]["layers"].strip().splitlines():
                independent = "|" in line
                layers.append(([m.strip() for m in line.split("|" if independent else ":")], independent))
            out[cp[sec].get("name", sec)] = layers
    return out


def layer_violations(graph: Graph, layers: list[tuple[list[str], bool]]) -> list[str]:
    """Direct imports that go up the layers, or across independent siblings."""
    rank: dict[str, tuple[int, str, bool]] = {}
    for i, (mods, independent) in enumerate(layers):
        for m in mods:
            rank[m] = (len(layers) - i, m, independent)  # higher number: higher layer

    def where(m: str) -> tuple[int, str, bool] | None:
        for top, r in rank.items():
            if m == top or m.startswith(top + "."):
                return r
        return None

    bad = []
    for src, dests in sorted(graph.items()):
        a = where(src)
        for d in sorted(dests):
            b = where(d)
            if a is None or b is None or a[1] == b[1]:
                continue
            if b[0] > a[0]:
                bad.append(f"{src} -> {d} (layer {a[1]} imports the higher {b[1]})")
            elif b[0] == a[0] and a[2]:
                bad.append(f"{src} -> {d} ({a[1]} and {b[1]} are independent)")
    return bad


# --- the checkers see what they must see --------------------------------------------------


def test_checkers_find_planted_defects(tmp_path: Path) -> None:
    pkg = tmp_path / "toy"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("from toy.low.a import f\n")
    (pkg / "low" / "a.py").write_text("def f():\n    from toy.high import g  # lazy and upward\n")
    (pkg / "high" / "__init__.py").write_text("from . import b\n")
    (pkg / "high" / "b.py").write_text("from ..low import a\n")
    graph = import_graph(tmp_path, "toy")
    assert "toy.high" in graph["toy.low.a"]  # function-level import seen
    assert "toy.high.b" in graph["toy.high"] and "toy.low.a" in graph["toy.high.b"]  # relative
    assert find_cycle(sibling_graph(graph, "toy")) == ["toy.high", "toy.low", "toy.high"]
    assert layer_violations(graph, [(["toy.high"], True), (["toy.low"], True)]) == [
        "toy.low.a -> toy.high (layer toy.low imports the higher toy.high)"]
    assert layer_violations(graph, [(["toy.high", "toy.low"], True)])  # independent siblings
    assert not layer_violations(graph, [(["toy.high", "toy.low"], False)])  # ':' siblings may


# --- advlab ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_graph_is_complete(graph: Graph) -> None:
    assert {"advlab.attacks.pgd", "advlab.cli.app", "advlab.transforms", "advlab.io"} <= set(graph)
    assert "advlab.attacks.eot" in graph["advlab.attacks"]
    assert "advlab.transforms" in graph["advlab.attacks.eot"]


def test_no_cycle_between_top_level_packages_and_modules(graph: Graph) -> None:
    cycle = find_cycle(sibling_graph(graph, PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("parent", packages(import_graph()))
def test_no_cycle_inside_a_package(graph: Graph, parent: str) -> None:
    cycle = find_cycle(sibling_graph(graph, parent))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_layer_contracts_hold(graph: Graph) -> None:
    contracts = layer_contracts()
    assert len(contracts) >= 2, "the layers contracts are missing from .importlinter"
    every = {m for layers in contracts.values() for mods, _ in layers for m in mods}
    top_level = {m for m in graph if m.count(".") == 1 and m != f"{PACKAGE}.__main__"}
    assert top_level <= every, f"not in any layer: {sorted(top_level - every)}"
    bad = [v for layers in contracts.values() for v in layer_violations(graph, layers)]
    assert not bad, "\n".join(bad)


def _lint_imports() -> str | None:
    here = Path(sys.executable).parent / "lint-imports"
    return str(here) if here.exists() else shutil.which("lint-imports")


def test_lint_imports() -> None:
    exe = _lint_imports()
    if exe is None:
        pytest.skip("lint-imports is not installed (pip install -e '.[dev]')")
    res = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
