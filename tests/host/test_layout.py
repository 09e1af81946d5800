"""The folder layout is the dependency rule: kit/ (host) and bench/, profile/ (container) import only the neutral
core/, never each other, and core/ imports nothing of the kit but itself (standard library and pydantic)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KIT_PACKAGES = {"kit", "bench", "profile", "core", "profiling", "run_profile"}  # profile/ scripts import each other
FORBIDDEN = {
    "kit": {"bench", "profile", "profiling", "run_profile"},
    "bench": {"kit"},
    "profile": {"kit"},
    "core": {"kit", "bench", "profile", "profiling", "run_profile"},
}
CORE_THIRD_PARTY = {"pydantic"}


def imported_top_names(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in the file (function-level imports too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def sources(folder: str) -> list[Path]:
    return sorted((REPO_ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_imports_across_the_host_container_line(folder):
    files = sources(folder)
    assert files, f"{folder}/ has no Python files"
    crossing = {f"{p.relative_to(REPO_ROOT)} imports {sorted(imported_top_names(p) & FORBIDDEN[folder])}"
                for p in files if imported_top_names(p) & FORBIDDEN[folder]}
    assert not crossing, "\n".join(sorted(crossing))


def test_the_core_needs_only_the_standard_library_and_pydantic():
    allowed = set(sys.stdlib_module_names) | CORE_THIRD_PARTY | {"core"}
    extra = {f"{p.relative_to(REPO_ROOT)}: {sorted(imported_top_names(p) - allowed)}"
             for p in sources("core") if imported_top_names(p) - allowed}
    assert not extra, "\n".join(sorted(extra))


def test_the_checker_sees_a_crossing(tmp_path):
    # The rule above must be able to fail: an import inside a function counts as much as one at the top.
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from bench.run import run\n    import kit.cli\n")
    assert imported_top_names(p) >= {"bench", "kit"}


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` under `root` (a package's __init__ is its name)."""
    modules = {}
    for p in sorted((root / package).rglob("*.py")):
        parts = p.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return modules


def imported_modules(path: Path, module: str) -> set[str]:
    """Dotted names a file imports anywhere (function-level too); `from a import b` names both a and a.b."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return names


def import_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Each import cycle among `modules` once, as a path that ends where it starts."""
    graph = {m: sorted(n for n in imported_modules(p, m) if n in modules and n != m) for m, p in modules.items()}
    cycles, seen = [], set()
    for start in sorted(graph):
        parent, queue = {}, [start]
        while queue:  # breadth first: the shortest way back to start
            m = queue.pop(0)
            for n in graph[m]:
                if n == start:
                    path = [m]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    cycle = path[::-1] + [start]
                    if frozenset(cycle) not in seen:
                        seen.add(frozenset(cycle))
                        cycles.append(cycle)
                    queue = []
                    break
                if n not in parent:
                    parent[n] = m
                    queue.append(n)
    return cycles


KNOWN_CYCLES: set[frozenset[str]] = set()  # none: any cycle in kit/ fails


def test_no_import_cycle_inside_the_kit():
    # A cycle hidden in function-level imports still ties the modules together (and invites stub protocols to
    # dodge it): each module of kit/ must be importable without the ones that import it.
    cycles = import_cycles(package_modules(REPO_ROOT, "kit"))
    new = [c for c in cycles if frozenset(c) not in KNOWN_CYCLES]
    assert not new, "import cycles in kit/:\n" + "\n".join(" -> ".join(c) for c in new)
    gone = KNOWN_CYCLES - {frozenset(c) for c in cycles}
    assert not gone, f"no longer a cycle, remove from KNOWN_CYCLES: {sorted(sorted(c) for c in gone)}"


def test_the_checker_sees_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import os\nfrom pkg.sub import c\n")
    (pkg / "sub" / "c.py").write_text("def f():\n    from ..b import g\n")
    (pkg / "b.py").write_text("def g():\n    import pkg.a\n")
    (pkg / "d.py").write_text("from pkg import a, b\n")  # imports into the cycle, is not part of it
    assert import_cycles(package_modules(tmp_path, "pkg")) == [["pkg.a", "pkg.sub.c", "pkg.b", "pkg.a"]]
    (pkg / "b.py").write_text("def g():\n    import os\n")
    assert import_cycles(package_modules(tmp_path, "pkg")) == []
