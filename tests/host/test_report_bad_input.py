"""Bad results files stop report assembly with one paragraph naming the file and the problem, and write nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kit import KIT_ROOT
from core.errors import KitError
from kit.report import assemble_reports
from core.results import dump_result


def _valid_json(make_bench_result) -> str:
    return dump_result(make_bench_result(label="vLLM (awq)", gpu="NVIDIA H200"))


def _malformed(path: Path, good: str) -> None:
    path.write_text("{this is not json", encoding="utf-8")


def _truncated(path: Path, good: str) -> None:
    path.write_text(good[: len(good) // 2], encoding="utf-8")


def _wrong_version(path: Path, good: str) -> None:
    data = json.loads(good)
    data["schema_version"] = 3
    path.write_text(json.dumps(data), encoding="utf-8")


def _version_one(path: Path, good: str) -> None:
    data = json.loads(good)
    data["schema_version"] = 1
    path.write_text(json.dumps(data), encoding="utf-8")


def _wrong_type(path: Path, good: str) -> None:
    data = json.loads(good)
    data["summary"]["ttft_ms"]["median"] = "fast"
    path.write_text(json.dumps(data), encoding="utf-8")


def _missing_field(path: Path, good: str) -> None:
    data = json.loads(good)
    del data["provenance"]
    path.write_text(json.dumps(data), encoding="utf-8")


def _wrong_kind(path: Path, good: str) -> None:
    data = json.loads(good)
    data["kind"] = "benchmark"
    path.write_text(json.dumps(data), encoding="utf-8")


def _unreadable_directory(path: Path, good: str) -> None:
    # A folder named *.json cannot be read as a file, even by root (chmod 000 is no obstacle to root).
    path.mkdir()


def _not_utf8(path: Path, good: str) -> None:
    path.write_bytes(b'{"format": "awq-kit-result", "x": "\xff\xfe"}')


def _unreadable_permissions(path: Path, good: str) -> None:
    path.write_text(good, encoding="utf-8")
    path.chmod(0)


CASES = [
    ("malformed", _malformed, ["is not valid JSON"]),
    ("truncated", _truncated, ["is not valid JSON", "truncated"]),
    ("wrong_version", _wrong_version, ["'schema_version' is 3", "reads version 2"]),
    ("version_one", _version_one, ["'schema_version' is 1", "reads version 2", "python tools/migrate_results.py"]),
    ("wrong_type", _wrong_type, ["summary.ttft_ms.median", "'fast'"]),
    ("missing_field", _missing_field, ["'provenance'", "Field required"]),
    ("wrong_kind", _wrong_kind, ["'kind' is 'benchmark'"]),
    ("unreadable_directory", _unreadable_directory, ["cannot be read"]),
    ("not_utf8", _not_utf8, ["cannot be read"]),
]
if os.geteuid() != 0:  # root reads a chmod-000 file anyway; the directory case covers unreadable files there
    CASES.append(("unreadable_permissions", _unreadable_permissions, ["cannot be read", "ermission"]))


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("case,breaker,problem", CASES, ids=[c[0] for c in CASES])
def test_bad_result_file_stops_with_one_paragraph_and_writes_nothing(tmp_path, make_bench_result, write_result_file,
                                                                      case, breaker, problem):
    results, reports = tmp_path / "results", tmp_path / "reports"
    write_result_file(make_bench_result(label="transformers"), results, "a-good.json")
    assemble_reports(results, reports, note=lambda _: None)  # reports from before the bad file arrived
    before = _snapshot(reports)
    # One more good file, so a (wrong) partial render would change the reports.
    write_result_file(make_bench_result(label="vLLM (awq_marlin)"), results, "c-good.json")
    bad = results / "b-bad.json"
    breaker(bad, _valid_json(make_bench_result))
    try:
        with pytest.raises(KitError) as info:
            assemble_reports(results, reports, note=lambda _: None)
    finally:
        if bad.is_file():
            bad.chmod(0o644)
    message = str(info.value)
    assert str(bad) in message
    for word in problem:
        assert word in message, (word, message)
    assert "\n" not in message  # one paragraph
    assert "Nothing was written" in message
    assert _snapshot(reports) == before  # same names (no temp files left), same bytes, untouched


def test_bad_file_into_an_empty_reports_folder_creates_no_report(tmp_path, make_bench_result):
    results = tmp_path / "results"
    results.mkdir()
    _truncated(results / "x.json", _valid_json(make_bench_result))
    with pytest.raises(KitError):
        assemble_reports(results, tmp_path / "reports", note=lambda _: None)
    assert not (tmp_path / "reports").exists()


def test_a_report_path_that_is_a_folder_fails_before_anything_is_replaced(tmp_path, make_bench_result,
                                                                          write_result_file):
    results, reports = tmp_path / "results", tmp_path / "reports"
    write_result_file(make_bench_result(), results)
    assemble_reports(results, reports, note=lambda _: None)
    (reports / "week2.png").unlink()
    (reports / "week2.png").mkdir()
    before = {p.name for p in reports.iterdir()}
    week1_before = (reports / "week1.md").stat().st_mtime_ns
    with pytest.raises(KitError, match="week2.png: exists and is not a regular file"):
        assemble_reports(results, reports, note=lambda _: None)
    assert {p.name for p in reports.iterdir()} == before
    assert (reports / "week1.md").stat().st_mtime_ns == week1_before


def test_cli_prints_the_paragraph_without_a_traceback(tmp_path, make_bench_result):
    results, reports = tmp_path / "results", tmp_path / "reports"
    results.mkdir()
    _wrong_version(results / "old.json", _valid_json(make_bench_result))
    proc = subprocess.run([sys.executable, "-m", "kit", "report", "--results-dir", str(results),
                           "--reports-dir", str(reports)], cwd=KIT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: {results / 'old.json'}: field 'schema_version' is 3" in proc.stderr
    assert not reports.exists()
