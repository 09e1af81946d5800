"""Reports go next to the results they render; the committed reports/ changes only from the committed results/.

Each `python -m kit` here runs for real, with the repository as its checkout; the repository's reports/ is
compared byte for byte before and after.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from kit import KIT_ROOT


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _kit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kit", *args], cwd=KIT_ROOT, capture_output=True, text=True,
                          timeout=300)


def test_reports_go_next_to_the_results_they_render(tmp_path):
    from kit.cli import reports_dir_for

    assert reports_dir_for(KIT_ROOT / "results", None) == KIT_ROOT / "reports"
    assert reports_dir_for(tmp_path / "run1" / "results", None) == tmp_path / "run1" / "reports"
    assert reports_dir_for(tmp_path / "h100", None) == tmp_path / "h100-reports"
    assert reports_dir_for(tmp_path / "h100", tmp_path / "mine") == tmp_path / "mine"


def test_report_from_another_results_folder_leaves_the_committed_reports_alone(tmp_path, make_bench_result,
                                                                               write_result_file):
    committed = _snapshot(KIT_ROOT / "reports")
    write_result_file(make_bench_result(), tmp_path / "results")
    r = _kit("report", "--results-dir", str(tmp_path / "results"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "reports" / "week1.md").is_file(), "the reports go beside that results folder"
    assert _snapshot(KIT_ROOT / "reports") == committed


def test_a_step_that_fails_at_once_renders_no_report(tmp_path):
    committed = _snapshot(KIT_ROOT / "reports")
    r = _kit("bench-hf", "--runner", "local", "--python", str(tmp_path / "no-such-python"),
             "--results-dir", str(tmp_path / "results"), "--", "--synthetic", "tiny", "--device", "cpu")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no-such-python" in r.stderr and "Traceback" not in r.stderr
    assert f"report: no new result in {tmp_path / 'results'}" in r.stdout
    assert not (tmp_path / "reports").exists()
    assert _snapshot(KIT_ROOT / "reports") == committed
