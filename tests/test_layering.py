"""The first-party import graph has no cycles, between modules or between packages.

Every ``import x`` / ``from x import y`` of the first-party packages (``hw``, ``model``, ``sim``,
``fpga``, ``tests``) is read with :mod:`ast` from every ``.py`` file, imports inside functions
included (docstrings and comments are not code, so example imports in them do not count).
``from pkg import mod`` is an edge to the module ``pkg.mod`` when that is a module, else to
``pkg``. Relative imports are resolved against the importing module.

Modules are grouped into packages by directory (``sim.tb.engine`` is in package ``sim.tb``),
except that ``hw.build`` and everything below it form the package ``hw.build`` whether it is a
module or a directory: the build flow may import ``fpga``, which imports ``hw``. A package's
``__init__`` belongs to that package; that a package sits inside another is not an edge.

``python -m tests.test_layering`` prints both graphs' cycles (strongly connected components).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("hw", "model", "sim", "fpga", "tests")
#: directories that are data, not code
SKIP_DIRS = {"data", "fixtures", "__pycache__"}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every first-party ``.py`` file."""
    out = {}
    for top in FIRST_PARTY:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            if SKIP_DIRS & set(rel.parts[:-1]):
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_package(name: str, files: dict[str, Path]) -> bool:
    return name in files and files[name].name == "__init__.py"


def _resolve(name: str, files: dict[str, Path]) -> str | None:
    """The longest first-party module prefix of ``name`` (``None`` if not first-party)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in files:
            return cand
        parts.pop()
    return None


def imports_of(module: str, path: Path, files: dict[str, Path]) -> set[str]:
    """First-party modules that ``module`` imports, anywhere in its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module if _is_package(module, files) else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, files)
                if target is not None:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            if base_name.split(".")[0] not in FIRST_PARTY:
                continue
            for alias in node.names:
                sub = f"{base_name}.{alias.name}"
                target = sub if sub in files else _resolve(base_name, files)
                if target is not None:
                    out.add(target)
    out.discard(module)
    return out


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports."""
    files = module_files(root)
    return {m: imports_of(m, p, files) for m, p in files.items()}


def package_of(module: str, files: dict[str, Path]) -> str:
    """The package (directory) a module belongs to; ``hw.build*`` is the package ``hw.build``."""
    if module == "hw.build" or module.startswith("hw.build."):
        return "hw.build"
    return module if _is_package(module, files) else module.rpartition(".")[0]


def package_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Package -> the packages its modules import (edges within a package dropped)."""
    files = module_files(root)
    graph: dict[str, set[str]] = {}
    for mod, deps in module_graph(root).items():
        pkg = package_of(mod, files)
        graph.setdefault(pkg, set()).update(package_of(d, files) for d in deps)
    for pkg, deps in graph.items():
        deps.discard(pkg)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    counter = 0
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _describe(graph: dict[str, set[str]], comps: list[list[str]]) -> str:
    lines = []
    for comp in comps:
        members = set(comp)
        edges = [f"{a} -> {b}" for a in comp for b in sorted(graph[a] & members)]
        lines.append(f"cycle {{{', '.join(comp)}}}: " + "; ".join(edges))
    return "\n".join(lines)


def test_no_module_import_cycle():
    graph = module_graph()
    comps = cycles(graph)
    assert not comps, "module import cycles:\n" + _describe(graph, comps)


def _package_edges_by(comps: list[list[str]], root: Path = ROOT) -> str:
    """The module imports behind the package edges inside ``comps``."""
    files = module_files(root)
    members = {p: set(c) for c in comps for p in c}
    lines = []
    for mod, deps in sorted(module_graph(root).items()):
        pkg = package_of(mod, files)
        for dep in sorted(deps):
            other = package_of(dep, files)
            if other != pkg and other in members.get(pkg, ()):
                lines.append(f"  {pkg} -> {other}: {mod} imports {dep}")
    return "\n".join(lines)


def test_no_package_import_cycle():
    graph = package_graph()
    comps = cycles(graph)
    assert not comps, ("package import cycles:\n" + _describe(graph, comps) + "\n"
                       + _package_edges_by(comps))


def test_checker_sees_cycles(tmp_path):
    """The checker itself: a function-level import cycle, a ``from pkg import mod`` edge and a
    docstring that shows an import (not an edge)."""
    (tmp_path / "sim" / "tb").mkdir(parents=True)
    (tmp_path / "hw" / "build").mkdir(parents=True)
    (tmp_path / "fpga").mkdir()
    for d in ("sim", "sim/tb", "hw", "hw/build", "fpga"):
        (tmp_path / d / "__init__.py").write_text("")
    (tmp_path / "sim" / "a.py").write_text('"""from sim import b"""\ndef f():\n    import sim.b\n')
    (tmp_path / "sim" / "b.py").write_text("from sim import a\n")
    (tmp_path / "sim" / "c.py").write_text('"""Example::\n\n    from sim.tb import run\n"""\n')
    (tmp_path / "sim" / "tb" / "run.py").write_text("from ..c import x\n")
    (tmp_path / "hw" / "build" / "flow.py").write_text("import fpga.top\n")
    (tmp_path / "fpga" / "top.py").write_text("from hw import core\n")
    (tmp_path / "hw" / "core.py").write_text("")
    mods = module_graph(tmp_path)
    assert mods["sim.b"] == {"sim.a"} and mods["sim.a"] == {"sim.b"}
    assert mods["sim.c"] == set()
    assert cycles(mods) == [["sim.a", "sim.b"]]
    pkgs = package_graph(tmp_path)
    assert mods["sim.tb.run"] == {"sim.c"}
    assert pkgs["sim.tb"] == {"sim"} and pkgs["sim"] == set()
    assert pkgs["hw.build"] == {"fpga"} and pkgs["fpga"] == {"hw"}
    assert cycles(pkgs) == []
    (tmp_path / "hw" / "core.py").write_text("def f():\n    from fpga import top\n")
    assert cycles(package_graph(tmp_path)) == [["fpga", "hw"]]


def main() -> int:
    status = 0
    for what, graph in (("module", module_graph()), ("package", package_graph())):
        comps = cycles(graph)
        print(f"{what} import cycles: {len(comps)}")
        if comps:
            print(_describe(graph, comps))
            if what == "package":
                print(_package_edges_by(comps))
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
