"""The host side never imports torch: not at import time, not while assembling reports.

Each check runs in a fresh interpreter whose `torch` is a fake package placed first on the path. Importing
it leaves a marker file and raises ImportError, so even an `import torch` inside try/except is caught.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kit import KIT_ROOT
from kit.report import OUTPUTS
from samples import sample_set

# Host-side modules outside kit/: kit/cli.py imports bench.options to check workload options on the host.
HOST_MODULES_OUTSIDE_KIT = ("bench.options",)


def _kit_modules() -> list[str]:
    names = []
    for path in sorted((KIT_ROOT / "kit").rglob("*.py")):
        rel = path.relative_to(KIT_ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__main__":  # running it would run the CLI
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


@pytest.fixture
def torch_trap(tmp_path) -> tuple[dict[str, str], Path]:
    fake = tmp_path / "fake_site" / "torch"
    fake.mkdir(parents=True)
    marker = tmp_path / "torch_was_imported"
    (fake / "__init__.py").write_text(
        "import pathlib, traceback\n"
        f"pathlib.Path({str(marker)!r}).write_text(''.join(traceback.format_stack()))\n"
        "raise ImportError('torch is blocked: host-side code must not import it')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake_site"), str(KIT_ROOT)])
    env["MPLBACKEND"] = "Agg"
    return env, marker


def _assert_no_torch(proc: subprocess.CompletedProcess, marker: Path) -> None:
    assert not marker.exists(), "torch was imported from:\n" + marker.read_text()
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_trap_works(torch_trap):
    env, marker = torch_trap
    proc = subprocess.run([sys.executable, "-c", "import torch"], env=env, cwd=KIT_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr
    assert marker.exists()


def test_every_host_module_imports_without_torch(torch_trap):
    env, marker = torch_trap
    modules = _kit_modules() + [m for m in HOST_MODULES_OUTSIDE_KIT
                                if (KIT_ROOT / (m.replace(".", "/") + ".py")).exists()]
    assert "kit.report" in modules and "kit.report.plots" in modules and "kit.cli" in modules
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=KIT_ROOT, capture_output=True, text=True,
                          timeout=120)
    _assert_no_torch(proc, marker)


def test_python_m_kit_report_runs_without_torch(torch_trap, tmp_path):
    env, marker = torch_trap
    results, reports = tmp_path / "results", tmp_path / "reports"
    sample_set(results)
    proc = subprocess.run([sys.executable, "-m", "kit", "report", "--results-dir", str(results),
                           "--reports-dir", str(reports)], env=env, cwd=KIT_ROOT, capture_output=True, text=True,
                          timeout=120)
    _assert_no_torch(proc, marker)
    assert sorted(p.name for p in reports.iterdir()) == sorted(OUTPUTS)
    assert "| **TTFT**" in (reports / "week1.md").read_text(encoding="utf-8")
