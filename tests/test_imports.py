"""The package's import structure: no import cycles, rich and typer only in cli/, no torch to declare commands."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import phitools

SRC = Path(phitools.__file__).resolve().parent


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, from the source with `ast`: every import statement counts,
    module-level or inside a function (a lazy import that only dodges a cycle is still a cycle)."""
    top = package_dir.name
    mods: dict[str, Path] = {}
    for p in package_dir.rglob("*.py"):
        parts = list(p.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p

    def known(name: str) -> str | None:  # the module itself, or the package whose attribute it names
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {known(a.name) for a in node.names if a.name.split(".")[0] == top}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                if base.split(".")[0] != top:
                    continue
                edges |= {known(f"{base}.{a.name}") for a in node.names}
        graph[mod] = {e for e in edges if e and e != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_package_has_no_import_cycles():
    graph = import_graph(SRC)
    assert len(graph) > 50 and "phitools.model.hf" in graph["phitools.model.checkpoint"]  # the graph is real
    assert cycles(graph) == [], "import cycle(s): put what both sides need in a module both can import"


def test_the_cycle_finder_finds_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")  # lazy and relative: still an edge
    (pkg / "c.py").write_text("import pkg.a\nimport os\n")
    (pkg / "d.py").write_text("from pkg import a\n")  # imports into the cycle, not part of it
    graph = import_graph(pkg)
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_rich_and_typer_are_imported_only_in_cli():
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("cli/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            offenders += [f"{rel}: {n}" for n in names if n.split(".")[0] in ("rich", "typer")]
    assert offenders == []


def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_the_training_loop_draws_no_rich():
    p = _fresh(
        "import sys, phitools.train.loop, phitools.model.grow, phitools.model.export\nassert 'rich' not in sys.modules"
    )
    assert p.returncode == 0, p.stderr


def test_declaring_the_commands_imports_no_torch():
    p = _fresh("import sys, phitools.cli\nassert 'torch' not in sys.modules")
    assert p.returncode == 0, p.stderr
