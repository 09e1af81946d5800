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
